// A table of text columns written into an SQLite database (the embedded default of `flurry-dlrm
// recommend`), replacing any table of that name atomically: readers see the old table or the new
// one, never a half-written one.
#pragma once

#include <string>
#include <vector>

namespace flurry::dlrm {

struct SqliteRows {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> values;  // one vector per row, aligned with columns
};

// Creates the database file when needed; builds the rows in a temporary table and, in one
// transaction, drops `table` and renames the temporary one to it. The table name must be an SQL
// identifier (letters, digits, underscores); throws flurry::Error with SQLite's message otherwise.
void replace_sqlite_table(const std::string& path, const std::string& table, const SqliteRows& rows);

}  // namespace flurry::dlrm
