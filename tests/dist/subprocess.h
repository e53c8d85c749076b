// Running a shell command for the multi-rank tests: its output captured, a time limit, and the
// option to SIGKILL the whole process tree (mpirun and every rank) at a chosen moment.
#pragma once

#include <string>

namespace flurry::test {

struct CommandResult {
  int exit_code = -1;  // exit status, or 128 + signal
  bool killed = false;  // we killed it (kill_after_s or the time limit)
  std::string output;   // stdout and stderr together
};

// Runs `cmd` with /bin/sh. kill_after_s > 0: SIGKILL the process and all its descendants then.
CommandResult run_command(const std::string& cmd, double timeout_s, double kill_after_s = -1);

}  // namespace flurry::test
