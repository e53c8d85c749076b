#include "tests/dist/subprocess.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace flurry::test {
namespace {

// Every descendant of `root`, from /proc (ranks may sit in their own process groups).
std::vector<pid_t> descendants(pid_t root) {
  std::vector<std::pair<pid_t, pid_t>> procs;  // pid, parent
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
      if (pid <= 0) continue;
      std::ifstream f("/proc/" + std::string(e->d_name) + "/stat");
      std::string line;
      if (!std::getline(f, line)) continue;
      const size_t close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state;
      pid_t ppid;
      rest >> state >> ppid;
      procs.emplace_back(pid, ppid);
    }
    closedir(d);
  }
  std::vector<pid_t> out{root};
  for (size_t i = 0; i < out.size(); ++i) {
    for (const auto& p : procs) {
      if (p.second == out[i]) out.push_back(p.first);
    }
  }
  return out;
}

void kill_tree(pid_t root) {
  // Freeze first so that nobody reacts (mpirun cleaning up) before everyone is gone.
  const auto tree = descendants(root);
  for (pid_t p : tree) kill(p, SIGSTOP);
  for (pid_t p : tree) kill(p, SIGKILL);
}

}  // namespace

CommandResult run_command(const std::string& cmd, double timeout_s, double kill_after_s) {
  char path[] = "/tmp/flurry-test-out-XXXXXX";
  const int fd = mkstemp(path);
  CommandResult res;
  if (fd < 0) return res;
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  for (;;) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if ((kill_after_s > 0 && el >= kill_after_s) || el >= timeout_s) {
      kill_tree(pid);
      res.killed = true;
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  res.output = ss.str();
  close(fd);
  unlink(path);
  return res;
}

}  // namespace flurry::test
