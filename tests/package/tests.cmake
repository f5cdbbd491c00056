# SPDX-License-Identifier: MIT
# Tests of what `cmake --install` and `cpack` produce. Included from tests/CMakeLists.txt in
# static and shared builds alike; nothing here needs GoogleTest.
if(NOT LOCKKIT_INSTALL)
  return()
endif()
set(pkg ${CMAKE_CURRENT_LIST_DIR})
string(REPLACE ";" " " components "${LOCKKIT_BUILT_COMPONENTS}")  # one argv word
string(REPLACE ";" " " extras "${LOCKKIT_BUILT_EXTRAS}")  # async: one argv word
# What the .deb test expects of each built backend (cmake/LockkitBackends.cmake), one argv word:
# "name|runtime package regex|-dev package|linked or module ...".
set(backend_facts "")
# A backend with several dependencies lists them separated by ",".
foreach(backend IN LISTS LOCKKIT_BUILT_COMPONENTS)
  list(JOIN LOCKKIT_BACKEND_${backend}_RUNTIME "," runtime)
  list(JOIN LOCKKIT_BACKEND_${backend}_DEV "," dev)
  list(APPEND backend_facts "${backend}|${runtime}|${dev}|${LOCKKIT_BACKEND_${backend}_TOOL}")
endforeach()
string(REPLACE ";" " " backend_facts "${backend_facts}")

# This build's own install tree: find_package and pkg-config consumers.
add_test(NAME package_test COMMAND bash ${pkg}/package_test.sh ${PROJECT_BINARY_DIR}
  ${PROJECT_SOURCE_DIR} "${components}" "${extras}")
add_test(NAME package_version_test COMMAND bash ${pkg}/version_test.sh ${PROJECT_BINARY_DIR}
  ${PROJECT_SOURCE_DIR})
# ~90 s on a quiet 2-core machine; over 300 s when it shares the machine with other builds.
set_tests_properties(package_test package_version_test PROPERTIES LABELS package TIMEOUT 900)
if(TARGET lockkit_cli)
  add_test(NAME package_man_test COMMAND bash ${pkg}/man_test.sh
    ${PROJECT_BINARY_DIR}/packaging/man ${LOCKKIT_CLI_SUBCOMMANDS})
  add_test(NAME package_completion_test COMMAND bash ${pkg}/completion_test.sh
    ${PROJECT_BINARY_DIR} $<TARGET_FILE:lockkit_cli>)
  set_tests_properties(package_man_test package_completion_test PROPERTIES LABELS package
    TIMEOUT 120)
endif()

# The shared libraries and the .deb packages: this build itself when it is a shared one, else a
# shared build of the same sources next to it (built once by a fixture, incrementally after).
# That second build leaves out what its tests do not look at: the conformance kit (a static
# archive, tested here), and by default the etcd backend, whose generated gRPC code alone took
# as long to compile as the rest of that build (etcd's installed package is still tested here,
# by package_test).
option(LOCKKIT_PACKAGE_SHARED_ETCD
  "The shared build of the package tests includes the etcd backend (slow: gRPC)" OFF)
set(shared_components ${LOCKKIT_BUILT_COMPONENTS})
set(shared_backend_facts "${backend_facts}")
if(BUILD_SHARED_LIBS)
  set(shared_dir ${PROJECT_BINARY_DIR})
else()
  set(shared_dir ${PROJECT_BINARY_DIR}/package-shared)
  set(shared_args -DLOCKKIT_WERROR=${LOCKKIT_WERROR} -DLOCKKIT_BUILD_CLI=${LOCKKIT_BUILD_CLI}
    -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=${CMAKE_CXX_FLAGS_RELWITHDEBINFO}"
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=${CMAKE_C_FLAGS_RELWITHDEBINFO}")
  if(NOT LOCKKIT_PACKAGE_SHARED_ETCD)
    list(REMOVE_ITEM shared_components etcd)
    string(REGEX REPLACE "(^| )etcd\\|[^ ]*" "" shared_backend_facts "${backend_facts}")
  endif()
  foreach(backend IN LISTS LOCKKIT_BACKENDS)
    string(TOUPPER ${backend} upper)
    set(with OFF)
    if(backend IN_LIST shared_components)
      set(with ON)
    endif()
    list(APPEND shared_args -DLOCKKIT_WITH_${upper}=${with})
  endforeach()
  foreach(extra IN LISTS LOCKKIT_EXTRAS)
    string(TOUPPER ${extra} upper)
    list(APPEND shared_args -DLOCKKIT_WITH_${upper}=${LOCKKIT_WITH_${upper}})
  endforeach()
  add_test(NAME package_shared_build COMMAND bash ${pkg}/shared_build.sh ${PROJECT_SOURCE_DIR}
    ${shared_dir} ${shared_args})
  # It builds with two jobs: it counts as two of ctest's -j.
  set_tests_properties(package_shared_build PROPERTIES LABELS package TIMEOUT 900
    FIXTURES_SETUP lockkit_shared RESOURCE_LOCK lockkit_shared_build PROCESSORS 2)
  string(REPLACE ";" " " shared_words "${shared_components}")
  add_test(NAME package_shared_test COMMAND bash ${pkg}/package_test.sh ${shared_dir}
    ${PROJECT_SOURCE_DIR} "${shared_words}" "${extras}")
  set_tests_properties(package_shared_test PROPERTIES LABELS package TIMEOUT 900
    FIXTURES_REQUIRED lockkit_shared)
endif()
string(REPLACE ";" " " shared_words "${shared_components}")
add_test(NAME package_symbols_test COMMAND bash ${pkg}/symbols_test.sh ${shared_dir}
  ${PROJECT_VERSION} "${shared_words}")
set_tests_properties(package_symbols_test PROPERTIES LABELS package TIMEOUT 120)
if(LOCKKIT_BUILD_CLI)
  add_test(NAME package_deb_test COMMAND bash ${pkg}/deb_test.sh ${shared_dir} ${PROJECT_VERSION}
    "${shared_backend_facts}")
  # cpack rewrites <shared_dir>/packages: one at a time.
  set_tests_properties(package_deb_test PROPERTIES LABELS package TIMEOUT 300
    RESOURCE_LOCK lockkit_shared_build)
endif()
if(NOT BUILD_SHARED_LIBS)
  set_tests_properties(package_symbols_test PROPERTIES FIXTURES_REQUIRED lockkit_shared)
  if(LOCKKIT_BUILD_CLI)
    set_tests_properties(package_deb_test PROPERTIES FIXTURES_REQUIRED lockkit_shared)
  endif()
endif()
