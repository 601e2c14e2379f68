// See autocast.h.
#include "engine/autocast.h"

namespace caption {

namespace {
thread_local bool t_autocast = false;
}  // namespace

AutocastGuard::AutocastGuard(bool enabled) : previous_(t_autocast) { t_autocast = enabled; }
AutocastGuard::~AutocastGuard() { t_autocast = previous_; }
bool autocast_enabled() { return t_autocast; }

}  // namespace caption
