# SPDX-License-Identifier: MIT
# Debian packages from the install components (`cpack -G DEB` in a build tree configured with
# -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX=/usr):
#   liblockkit<soversion>  the shared libraries (core and every built backend), e.g. liblockkit0.1:
#                          Debian names a library package after its soname, liblockkit.so.0.1
#   liblockkit-dev         headers, the .so links, CMake package and pkg-config files
#   lockkit                the tool, its backend modules (${libdir}/lockkit), man pages and bash
#                          completion; dpkg-shlibdeps adds what the modules need (libpq5, ...)
# A static build packages liblockkit-dev (with the .a archives) and lockkit only.
set(CPACK_PACKAGE_NAME lockkit)
set(CPACK_PACKAGE_VENDOR "the lockkit authors")
set(CPACK_PACKAGE_CONTACT "the lockkit authors <lockkit@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps fills in libc6, libhiredis0.14, ...
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)

set(lib_package liblockkit${LOCKKIT_SOVERSION})
set(deb_version "${PROJECT_VERSION}")
set(dev_depends "")
set(schemes "")
foreach(backend IN LISTS LOCKKIT_BUILT_COMPONENTS)
  list(APPEND dev_depends ${LOCKKIT_BACKEND_${backend}_DEV})
  list(APPEND schemes ${backend}://)
endforeach()
list(JOIN schemes ", " schemes)
foreach(extra IN LISTS LOCKKIT_BUILT_EXTRAS)
  list(APPEND dev_depends ${LOCKKIT_EXTRA_${extra}_DEV})
endforeach()

if(BUILD_SHARED_LIBS)
  set(CPACK_COMPONENTS_ALL Libraries Development)
  set(CPACK_DEBIAN_LIBRARIES_PACKAGE_NAME ${lib_package})
  set(CPACK_DEBIAN_LIBRARIES_PACKAGE_SECTION libs)
  set(CPACK_DEBIAN_LIBRARIES_DESCRIPTION
    "leased locks for C++20 (shared libraries)\n liblockkit and one library per backend: ${schemes}.")
  # Our own libraries are not installed where dpkg-shlibdeps looks, nor known to dpkg: it finds
  # them in the build tree and the tool states the exact version of its library package.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR})
  foreach(backend IN LISTS LOCKKIT_BUILT_COMPONENTS)
    list(APPEND CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/src/${backend})
  endforeach()
  foreach(extra IN LISTS LOCKKIT_BUILT_EXTRAS)
    list(APPEND CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/src/${extra})
  endforeach()
  list(APPEND CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${LOCKKIT_MODULE_BUILD_DIR})
  list(PREPEND dev_depends "${lib_package} (= ${deb_version})")
  set(CPACK_DEBIAN_TOOL_PACKAGE_DEPENDS "${lib_package} (= ${deb_version})")
else()
  set(CPACK_COMPONENTS_ALL Development)
endif()
if(TARGET lockkit_cli)
  list(APPEND CPACK_COMPONENTS_ALL Tool)
endif()
list(JOIN dev_depends ", " CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME liblockkit-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION
  "leased locks for C++20 (development files)\n Headers, CMake package (find_package(lockkit COMPONENTS ...)) and pkg-config files.")
set(CPACK_DEBIAN_TOOL_PACKAGE_NAME lockkit)
set(CPACK_DEBIAN_TOOL_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOL_DESCRIPTION
  "run commands under leased locks shared by processes and machines\n Like flock(1), but the lock may live in SQLite, Redis or PostgreSQL.")
include(CPack)
