// The list of work items of a job: paths from the command line, directories (searched recursively
// for names matching --glob), and --input-list files (one path per line). Ids are the paths as
// given (a directory's files as "<dir>/<relative path>"), each once, in the order given; the index
// of an item is its position in that order, which is also the order of results.jsonl.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace flurry::dist {

class DistContext;

struct WorkItem {
  int64_t index = 0;
  std::string id;
  double cost = 0;  // in the job's unit (audio seconds, bytes, tokens); drives the scheduling
  // Where this item's own output files go, relative to OUTPUT_DIR/outputs/ and without extension
  // (see assign_output_keys); unique within the job.
  std::string key;
  // A chunk of rows of a table (embed, dlrm): rows [row_begin, row_end); both -1 for a file.
  int64_t row_begin = -1, row_end = -1;
  int64_t rows() const { return row_end > row_begin ? row_end - row_begin : 0; }
};

// Estimates the cost of one input; may throw (the item then gets cost 0 and fails later, when the
// worker opens it, as an error record).
using CostFn = std::function<double(const std::string& path)>;

// The default cost: the file's size in bytes (0 when it cannot be read).
double byte_size_cost(const std::string& path);

struct InputSpec {
  std::vector<std::string> paths;  // files or directories
  std::string input_list;          // file with one path per line ('#' starts a comment line)
  std::string glob = "*";          // basename pattern for files found in directories (fnmatch)
};

// Expands the spec into items; throws flurry::Error when an input list cannot be read or nothing
// at all was given. Paths that do not exist stay in the list (they fail as error records). With a
// multi-rank context, rank 0 expands and costs the inputs and broadcasts them, so 64 ranks do not
// each stat a million files; every rank returns the same list.
std::vector<WorkItem> collect_inputs(const InputSpec& spec, const CostFn& cost = byte_size_cost,
                                     const DistContext* ctx = nullptr);

// The same for a list of ids that are not files (records of a table): costs from `cost(id)`.
std::vector<WorkItem> make_items(const std::vector<std::string>& ids, const CostFn& cost);

// Items that are chunks of `total_rows` rows of one table, `rows_per_chunk` each (the last one
// shorter): ids "<prefix>:<begin>-<end>", cost = rows × `cost_per_row` (or `row_cost(begin, end)`
// when given, e.g. the chunk's token count).
std::vector<WorkItem> make_row_chunks(const std::string& prefix, int64_t total_rows, int64_t rows_per_chunk,
                                      const std::function<double(int64_t, int64_t)>& row_cost = nullptr);

// Items made by rank 0 alone (`make`: e.g. an index of a multi-GB corpus that only one rank should
// scan), sent to every rank; a failure on rank 0 is thrown on every rank. Alone: just make().
std::vector<WorkItem> share_items(const DistContext* ctx, const std::function<std::vector<WorkItem>()>& make);

// Gives every item a unique output key, the same on every rank: its path relative to the deepest
// folder all the ids share, without the extension ("a/x.wav", "b/x.wav" -> "a/x", "b/x"; a single
// "/data/x.wav" -> "x"). Ids whose keys would collide keep their extension ("x.wav", "x.mp3"); a
// collision that remains gets "~<index>". ".." and empty components never climb out of the folder.
void assign_output_keys(std::vector<WorkItem>& items);

}  // namespace flurry::dist
