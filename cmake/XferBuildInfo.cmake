# Run at every build (cmake -P): writes build_info.cpp from its template, touching it only when the git state
# changed, so a commit re-stamps provenance without rebuilding anything else.
# Inputs: SRC_DIR, TEMPLATE, OUTPUT, PROJECT_VERSION, CMAKE_CXX_COMPILER_ID, CMAKE_CXX_COMPILER_VERSION, CMAKE_BUILD_TYPE
set(XFER_GIT_COMMIT "unknown")
set(XFER_GIT_DIRTY "false")
find_program(GIT git)
if(GIT)
  execute_process(COMMAND "${GIT}" -C "${SRC_DIR}" rev-parse HEAD OUTPUT_VARIABLE _c RESULT_VARIABLE _rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_rc EQUAL 0)
    set(XFER_GIT_COMMIT "${_c}")
    execute_process(COMMAND "${GIT}" -C "${SRC_DIR}" status --porcelain --untracked-files=no
                    OUTPUT_VARIABLE _s ERROR_QUIET)
    if(NOT _s STREQUAL "")
      set(XFER_GIT_DIRTY "true")
    endif()
  endif()
endif()
configure_file("${TEMPLATE}" "${OUTPUT}.tmp" @ONLY)
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
