// kvf-launch mpi where the build found no MPI.
#include <cstdio>

#include "tools/launch/internal/common.h"

namespace kvf::launch::internal {

int RunMpi(const LaunchFlags&, int*, char***) {
  std::fprintf(stderr,
               "kvf-launch: built without MPI (install libopenmpi-dev and reconfigure); "
               "`kvf-launch local` works without it\n");
  return 2;
}

}  // namespace kvf::launch::internal
