// The test main: GoogleTest needs its own so that MPI and Kokkos (where a test binary links them) are initialised
// before and finalised after every test, in the order platform-notes.md prescribes.
#include <gtest/gtest.h>

#include "xfer/core/log.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  xfer::log::init("warn");
  return RUN_ALL_TESTS();
}
