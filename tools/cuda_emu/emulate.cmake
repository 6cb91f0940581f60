# emulate.cmake — FASTNN_CUDA=EMULATE (a developer tool, never a user build): fastnn._C with
# its CUDA sources (FASTNN_CUDA_SOURCES) compiled by the C++ compiler against the host
# emulator of the CUDA runtime in this directory, so the CUDA code runs on a machine
# without a GPU. csrc/ is mirrored through transform.py (mirror.py) into the build tree,
# at configure time so the files exist and before every build so edits reach it; the
# mirror comes first on the include path. FASTNN_EMU_SANITIZE=ON adds ASan and UBSan.
set(FASTNN_EMU_DIR ${CMAKE_CURRENT_LIST_DIR})
set(FASTNN_EMU_MIRROR ${CMAKE_BINARY_DIR}/emu_src/csrc)
set(fastnn_emu_mirror_command
    ${Python_EXECUTABLE} ${FASTNN_EMU_DIR}/mirror.py ${CMAKE_SOURCE_DIR}/csrc ${FASTNN_EMU_MIRROR})
execute_process(COMMAND ${fastnn_emu_mirror_command} RESULT_VARIABLE fastnn_emu_mirrored)
if(NOT fastnn_emu_mirrored EQUAL 0)
  message(FATAL_ERROR "FASTNN_CUDA=EMULATE: mirroring csrc/ through transform.py failed")
endif()

set(fastnn_emu_sources)
foreach(source ${FASTNN_CUDA_SOURCES})
  string(REGEX REPLACE "^csrc/" "" relative ${source})
  list(APPEND fastnn_emu_sources ${FASTNN_EMU_MIRROR}/${relative}.cpp)
endforeach()
add_custom_target(fastnn_emu_mirror
    COMMAND ${fastnn_emu_mirror_command}
    BYPRODUCTS ${fastnn_emu_sources}
    COMMENT "Mirroring csrc/ through tools/cuda_emu/transform.py" VERBATIM)
add_dependencies(_C fastnn_emu_mirror)

target_sources(_C PRIVATE ${fastnn_emu_sources})
target_include_directories(_C BEFORE PRIVATE ${FASTNN_EMU_MIRROR} ${FASTNN_EMU_DIR})
target_compile_definitions(_C PRIVATE FASTNN_WITH_CUDA=1 FASTNN_CUDA_EMULATED=1)
target_compile_options(_C PRIVATE -g -pthread)
target_link_options(_C PRIVATE -pthread)

# Device code as nvcc compiles it: no errno, a*b + c contracted into an FMA (-mfma where
# this CPU has it). #line makes GCC take a mirrored .cu for a header: hence the -Wno.
set(fastnn_device_flags -fno-math-errno -ffp-contract=fast -Wno-subobject-linkage)
if(EXISTS /proc/cpuinfo)
  file(READ /proc/cpuinfo fastnn_cpuinfo)
  if(fastnn_cpuinfo MATCHES "[ \t]fma[ \t\n]")
    list(APPEND fastnn_device_flags -mfma)
  endif()
endif()
set_source_files_properties(${fastnn_emu_sources} PROPERTIES COMPILE_OPTIONS "${fastnn_device_flags}")

if(FASTNN_EMU_SANITIZE)
  set(fastnn_sanitize -g -fsanitize=address,undefined -fno-sanitize-recover=all
      -fno-omit-frame-pointer)
  target_compile_options(_C PRIVATE ${fastnn_sanitize})
  target_link_options(_C PRIVATE ${fastnn_sanitize})
  foreach(isa ${FASTNN_ISA_PATHS})
    target_compile_options(fastnn_cpu_${isa} PRIVATE ${fastnn_sanitize})
  endforeach()
endif()
