#include "models/dlrm/app/sqlite_table.h"

#include <sqlite3.h>

#include <cctype>

#include "runtime/check.h"

namespace flurry::dlrm {

namespace {

bool identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

class Db {
 public:
  explicit Db(const std::string& path) : path_(path) {
    const int rc = sqlite3_open(path.c_str(), &db_);
    if (rc != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      FLURRY_FAIL(path << ": cannot open the SQLite database: " << msg);
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      FLURRY_FAIL(path_ << ": SQLite: " << msg << " (in: " << sql.substr(0, 120) << ")");
    }
  }
  sqlite3* get() { return db_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace

void replace_sqlite_table(const std::string& path, const std::string& table, const SqliteRows& rows) {
  FLURRY_CHECK(identifier(table), "table name '" << table << "' is not an SQL identifier (letters, digits, _)");
  for (const std::string& c : rows.columns) FLURRY_CHECK(identifier(c), "column name '" << c << "' is not an SQL identifier");
  FLURRY_CHECK(!rows.columns.empty(), "an SQLite table needs at least one column");
  Db db(path);
  const std::string tmp = table + "__flurry_new";
  std::string cols, marks;
  for (size_t k = 0; k < rows.columns.size(); ++k) {
    cols += (k ? ", " : "") + rows.columns[k] + " TEXT";
    marks += k ? ", ?" : "?";
  }
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec("DROP TABLE IF EXISTS " + tmp);
    db.exec("CREATE TABLE " + tmp + " (" + cols + ")");
    sqlite3_stmt* st = nullptr;
    const std::string sql = "INSERT INTO " + tmp + " VALUES (" + marks + ")";
    FLURRY_CHECK(sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &st, nullptr) == SQLITE_OK,
                 path << ": SQLite: " << sqlite3_errmsg(db.get()));
    for (const auto& row : rows.values) {
      FLURRY_CHECK(row.size() == rows.columns.size(), "an SQLite row of " << row.size() << " values for "
                                                                          << rows.columns.size() << " columns");
      sqlite3_reset(st);
      for (size_t k = 0; k < row.size(); ++k) {
        sqlite3_bind_text(st, static_cast<int>(k + 1), row[k].c_str(), static_cast<int>(row[k].size()), SQLITE_TRANSIENT);
      }
      if (sqlite3_step(st) != SQLITE_DONE) {
        const std::string msg = sqlite3_errmsg(db.get());
        sqlite3_finalize(st);
        FLURRY_FAIL(path << ": SQLite insert: " << msg);
      }
    }
    sqlite3_finalize(st);
    db.exec("DROP TABLE IF EXISTS " + table);
    db.exec("ALTER TABLE " + tmp + " RENAME TO " + table);
    db.exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

}  // namespace flurry::dlrm
