#include "xfer/sweep/heartbeat.hpp"

namespace xfer::sweep {

Heartbeat::Heartbeat(double interval, double hung_timeout, double now)
    : interval_(interval), hung_timeout_(hung_timeout), last_sent_(now), moved_(now) {}

bool Heartbeat::due(int64_t progress, double now) {
  if (progress != seen_) seen_ = progress, moved_ = now;
  stalled_ = seen_ > 0 && now - moved_ > hung_timeout_ / 2;
  if (stalled_ || now - last_sent_ < interval_) return false;
  last_sent_ = now;
  return true;
}

}  // namespace xfer::sweep
