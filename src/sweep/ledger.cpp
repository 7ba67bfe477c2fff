#include "xfer/sweep/ledger.hpp"

namespace xfer::sweep {

std::string_view action_name(Action a) {
  switch (a) {
    case Action::done: return "done";
    case Action::final: return "diverged (final)";
    case Action::resume: return "resume";
    case Action::retry: return "retry";
    case Action::fresh: return "new";
    case Action::exhausted: return "failed (attempts exhausted)";
  }
  return "?";
}

Action decide(std::optional<TrialStatus> status, int attempts, int max_attempts) {
  if (!status) return Action::fresh;
  switch (*status) {
    case TrialStatus::pending: return Action::fresh;
    case TrialStatus::done: return Action::done;
    case TrialStatus::diverged: return Action::final;
    case TrialStatus::running:      // orphaned by a killed job
    case TrialStatus::interrupted:  // stopped by a signal or the time limit, checkpointed
      return Action::resume;
    case TrialStatus::failed:
    case TrialStatus::oom: return attempts < max_attempts ? Action::retry : Action::exhausted;
  }
  return Action::fresh;
}

Start on_start(Action a, int attempts) {
  Start s;
  const bool from_scratch = a == Action::fresh || a == Action::retry;
  s.attempts = from_scratch ? attempts + 1 : attempts;
  s.clear_checkpoints = a == Action::retry;
  return s;
}

Finish on_finish(TrialStatus reported, int attempts, int max_attempts, bool sweep_stopping, Cause cause) {
  Finish f;
  f.status = reported;
  f.final = finished(reported);
  if (cause == Cause::environment) {
    f.environment_stop = true;
    if (!f.final) f.status = TrialStatus::interrupted;  // resumes from its last checkpoint, as the same attempt
    f.remove_checkpoints = f.final;
    return f;
  }
  if (retryable(reported)) {
    f.retry = attempts < max_attempts && cause != Cause::input;
    f.exhausted = attempts >= max_attempts;
  }
  f.remove_checkpoints = f.final || f.exhausted;
  f.stop_sweep = reported == TrialStatus::interrupted && !sweep_stopping;
  return f;
}

Finish on_hung(int attempts, int max_attempts) {
  Finish f = on_finish(TrialStatus::failed, attempts, max_attempts, false);
  // The group may still be writing them; a later attempt starts from scratch anyway.
  f.remove_checkpoints = false;
  return f;
}

}  // namespace xfer::sweep
