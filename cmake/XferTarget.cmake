# xfer_module(NAME SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]): one static library per module folder.
function(xfer_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(xfer_${name} STATIC ${ARG_SOURCES})
  add_library(xfer::${name} ALIAS xfer_${name})
  target_include_directories(xfer_${name} PUBLIC "${PROJECT_SOURCE_DIR}/include")
  target_link_libraries(xfer_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  xfer_warnings(xfer_${name})
endfunction()

function(xfer_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(XFER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# Code that exists to be tested — the test binaries and the torch2 copy of the trainer — is compiled at -O1 in a
# Release build (and a RelWithDebInfo one: the asan preset's, where -O1 is what the sanitizers advise): about half
# the compile time of -O3 on the two cores `./run test` is sized for, and the work a test waits on runs in the
# product's libraries, which keep the build type's flags (the last -O on the line wins).
function(xfer_test_optimisation target)
  target_compile_options(${target} PRIVATE $<$<CONFIG:Release,RelWithDebInfo>:-O1>)
endfunction()
