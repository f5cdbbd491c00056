# SPDX-License-Identifier: MIT
# Warning flags, sanitizers and the one way a backend library is declared.

if(LOCKKIT_SANITIZER)
  # Applies to every target of this project (library, tests, tools), not to consumers.
  add_compile_options(-fsanitize=${LOCKKIT_SANITIZER} -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=${LOCKKIT_SANITIZER})
  if(LOCKKIT_SANITIZER MATCHES "undefined")
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
endif()

# Turns on our warnings (errors with LOCKKIT_WERROR) for `target`.
function(lockkit_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
    $<$<BOOL:${LOCKKIT_WERROR}>:-Werror>)
endfunction()

# lockkit_add_backend(<name> SOURCES <files...> [LINK <private deps...>])
# Declares lockkit_<name> (alias lockkit::<name>, export name <name>). One source must define
#   extern "C" void lockkit_backend_anchor_<name>() {}
# next to the static object that calls lockkit::register_backend: every consumer links with
# --undefined=lockkit_backend_anchor_<name>, so the linker keeps that object even from a static
# archive and `lockkit::open` knows the scheme without a registration call.
function(lockkit_add_backend name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK" ${ARGN})
  add_library(lockkit_${name} ${ARG_SOURCES})
  add_library(lockkit::${name} ALIAS lockkit_${name})
  set_target_properties(lockkit_${name} PROPERTIES EXPORT_NAME ${name}
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
  target_link_libraries(lockkit_${name} PUBLIC lockkit::lockkit
    PRIVATE $<BUILD_INTERFACE:lockkit_internal> ${ARG_LINK})
  target_link_options(lockkit_${name} INTERFACE "LINKER:--undefined=lockkit_backend_anchor_${name}")
  lockkit_warnings(lockkit_${name})
  if(LOCKKIT_INSTALL)
    install(TARGETS lockkit_${name} EXPORT lockkitTargets
      ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
      LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  endif()
endfunction()
