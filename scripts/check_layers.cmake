# The layer rule of docs/design.md, checked on every include: a folder includes only itself and
# the layers below it (apps -> train -> models/data -> engine -> kernels). bench/ and tests/ may
# include everything. Run by CTest (layer_includes); by hand:
#   cmake -DROOT=. -P scripts/check_layers.cmake
# Also: the engine core (tensor, autograd, rng) includes neither engine/ops/ nor engine/cuda/.
# Prints every upward include with its file and line, and fails when there is one.
cmake_minimum_required(VERSION 3.25)
if(NOT ROOT)
  message(FATAL_ERROR "check_layers: pass -DROOT=<repository root>")
endif()

# folder -> the project folders its files may include (besides system and library headers).
set(allowed_kernels kernels)
set(allowed_engine engine kernels)
set(allowed_data data engine kernels)
set(allowed_models models engine kernels)
set(allowed_train train models data engine kernels)
set(allowed_apps apps train models data engine kernels)
set(project_folders kernels engine data models train apps bench tests)

set(violations 0)
foreach(layer kernels engine data models train apps)
  file(GLOB_RECURSE sources "${ROOT}/${layer}/*.h" "${ROOT}/${layer}/*.cpp" "${ROOT}/${layer}/*.cu"
       "${ROOT}/${layer}/*.cuh")
  foreach(src IN LISTS sources)
    file(STRINGS "${src}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" path "${line}")
      string(REGEX MATCH "^[^/]+" top "${path}")
      if(NOT (path MATCHES "/") OR NOT (top IN_LIST project_folders))
        continue()  # a relative include inside the folder, or a library header
      endif()
      if(NOT top IN_LIST allowed_${layer})
        file(RELATIVE_PATH rel "${ROOT}" "${src}")
        message(STATUS "upward include: ${rel} (layer ${layer}) includes \"${path}\" (layer ${top})")
        math(EXPR violations "${violations} + 1")
      endif()
    endforeach()
  endforeach()
endforeach()
# Inside the engine: the core (tensors, autograd, random numbers) includes neither the op layer
# nor the CUDA backend; what it needs from them it declares in engine/core_backend.h.
foreach(core tensor.h tensor.cpp tensor_impl.h autograd.h autograd.cpp rng.h rng.cpp core_backend.h)
  if(NOT EXISTS "${ROOT}/engine/${core}")
    continue()
  endif()
  file(STRINGS "${ROOT}/engine/${core}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"engine/(ops|cuda)/")
  foreach(line IN LISTS lines)
    message(STATUS "core include: engine/${core} includes ${line} (the core sits below engine/ops and engine/cuda)")
    math(EXPR violations "${violations} + 1")
  endforeach()
endforeach()

if(violations GREATER 0)
  message(FATAL_ERROR "check_layers: ${violations} upward include(s); see docs/design.md (Layers)")
endif()
message(STATUS "check_layers: no upward include")
