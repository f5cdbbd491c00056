# SPDX-License-Identifier: MIT
# Warning flags, sanitizers and the one way a backend library is declared.

if(LOCKKIT_SANITIZER)
  # Applies to every target of this project (library, tests, tools), not to consumers. Reports
  # need at least line tables: build types without debug information get -g1.
  add_compile_options(-fsanitize=${LOCKKIT_SANITIZER} -fno-omit-frame-pointer
    $<$<NOT:$<CONFIG:Debug,RelWithDebInfo>>:-g1>)
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

# Version, soname and symbol visibility of one of our libraries: only what the public headers
# mark LOCKKIT_EXPORT is exported from a shared build (never lockkit::detail).
function(lockkit_library_properties target)
  set_target_properties(${target} PROPERTIES VERSION ${PROJECT_VERSION}
    SOVERSION ${LOCKKIT_SOVERSION} CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
endfunction()

# lockkit_add_backend(<name> SOURCES <files...> [LINK <private deps...>])
# Declares lockkit_<name> (alias lockkit::<name>, export name <name>). One source must define
#   extern "C" void lockkit_backend_anchor_<name>() {}
# next to the static object that calls lockkit::register_backend: every consumer links with
# --undefined=lockkit_backend_anchor_<name>, so the linker keeps that object even from a static
# archive and `lockkit::open` knows the scheme without a registration call.
# A shared backend has the same problem with --as-needed (Debian's and Ubuntu's linkers drop a
# library no object refers to, and --undefined does not count as a reference): consumers list
# the library once more wrapped in --push-state,--no-as-needed ... --pop-state, which only
# affects this one library.
# When the tool loads the backend as a module (LOCKKIT_BACKEND_<name>_TOOL is "module"), the same
# objects also make lockkit_<name>_module: lockkit-<name>.so in ${libdir}/lockkit, which
# registers the backend's schemes when the tool dlopen()s it.
function(lockkit_add_backend name)
  # OBJECTS: further objects for the library and the module (e.g. generated code compiled
  # without our warnings), as $<TARGET_OBJECTS:...>.
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK;OBJECTS" ${ARGN})
  # Compiled once, position-independent, for the library and the module alike.
  add_library(lockkit_${name}_objects OBJECT ${ARG_SOURCES})
  set_target_properties(lockkit_${name}_objects PROPERTIES POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  # Usage requirements only (headers, compile features): an object library links nothing.
  target_link_libraries(lockkit_${name}_objects PRIVATE lockkit::lockkit lockkit_internal
    ${ARG_LINK})
  lockkit_warnings(lockkit_${name}_objects)

  add_library(lockkit_${name} $<TARGET_OBJECTS:lockkit_${name}_objects> ${ARG_OBJECTS})
  add_library(lockkit::${name} ALIAS lockkit_${name})
  set_target_properties(lockkit_${name} PROPERTIES EXPORT_NAME ${name} LINKER_LANGUAGE CXX)
  lockkit_library_properties(lockkit_${name})
  target_link_libraries(lockkit_${name} PUBLIC lockkit::lockkit
    PRIVATE $<BUILD_INTERFACE:lockkit_internal> ${ARG_LINK})
  target_link_options(lockkit_${name} INTERFACE "LINKER:--undefined=lockkit_backend_anchor_${name}")
  get_target_property(type lockkit_${name} TYPE)
  if(type STREQUAL "SHARED_LIBRARY")
    target_link_options(lockkit_${name} INTERFACE
      "LINKER:--push-state,--no-as-needed,$<TARGET_LINKER_FILE:lockkit::${name}>,--pop-state"
      # The private copy of lockkit::detail stays private: no symbol of it is exported.
      PRIVATE "LINKER:--exclude-libs,liblockkit_internal_code.a")
  endif()
  if(LOCKKIT_INSTALL)
    install(TARGETS lockkit_${name} EXPORT lockkit-${name}Targets
      ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development
      LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Libraries
        NAMELINK_COMPONENT Development)
  endif()

  if(LOCKKIT_BUILD_CLI AND LOCKKIT_BACKEND_${name}_TOOL STREQUAL "module")
    add_library(lockkit_${name}_module MODULE $<TARGET_OBJECTS:lockkit_${name}_objects>
      ${ARG_OBJECTS})
    set_target_properties(lockkit_${name}_module PROPERTIES OUTPUT_NAME lockkit-${name} PREFIX ""
      LINKER_LANGUAGE CXX LIBRARY_OUTPUT_DIRECTORY ${LOCKKIT_MODULE_BUILD_DIR})
    # The module's own copy of lockkit::detail, never exported. The public API comes from the
    # program that loads it: the tool exports it from its static core (cli/CMakeLists.txt), or
    # the module links the shared liblockkit the tool already loaded. Never a second core,
    # whose own backend registry the tool would not see.
    target_link_libraries(lockkit_${name}_module PRIVATE lockkit_internal_code ${ARG_LINK})
    target_link_options(lockkit_${name}_module PRIVATE
      "LINKER:--exclude-libs,liblockkit_internal_code.a")
    if(BUILD_SHARED_LIBS)
      target_link_libraries(lockkit_${name}_module PRIVATE lockkit::lockkit)
    endif()
    if(LOCKKIT_INSTALL)
      install(TARGETS lockkit_${name}_module LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/lockkit
        COMPONENT Tool)
    endif()
  endif()
endfunction()

# lockkit.pc plus lockkit-<backend>.pc per built backend (and lockkit-async.pc), in ${libdir}/pkgconfig. The files find
# their prefix relative to themselves, so an installed tree may be moved. A backend's own
# dependency is private (added by `pkg-config --static`, for static archives).
function(lockkit_install_pkgconfig)
  file(RELATIVE_PATH up "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
  set(LOCKKIT_PC_PREFIX "\${pcfiledir}/${up}")
  string(REGEX REPLACE "/$" "" LOCKKIT_PC_PREFIX "${LOCKKIT_PC_PREFIX}")
  set(out ${PROJECT_BINARY_DIR}/pkgconfig)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/lockkit.pc.in ${out}/lockkit.pc @ONLY)
  set(files ${out}/lockkit.pc)
  foreach(backend IN LISTS LOCKKIT_BUILT_COMPONENTS)
    set(LOCKKIT_PC_BACKEND ${backend})
    set(LOCKKIT_PC_BACKEND_PRIVATE "${LOCKKIT_BACKEND_${backend}_PC}")
    set(LOCKKIT_PC_BACKEND_WHAT "${LOCKKIT_BACKEND_${backend}_WHAT}")
    configure_file(${PROJECT_SOURCE_DIR}/cmake/lockkit-backend.pc.in ${out}/lockkit-${backend}.pc
      @ONLY)
    list(APPEND files ${out}/lockkit-${backend}.pc)
  endforeach()
  foreach(extra IN LISTS LOCKKIT_BUILT_EXTRAS)
    set(LOCKKIT_PC_EXTRA ${extra})
    set(LOCKKIT_PC_EXTRA_WHAT "${LOCKKIT_EXTRA_${extra}_WHAT}")
    set(LOCKKIT_PC_EXTRA_PRIVATE "${LOCKKIT_EXTRA_${extra}_PC}")
    set(LOCKKIT_PC_EXTRA_CFLAGS "${LOCKKIT_EXTRA_${extra}_CFLAGS}")
    configure_file(${PROJECT_SOURCE_DIR}/cmake/lockkit-extra.pc.in ${out}/lockkit-${extra}.pc
      @ONLY)
    list(APPEND files ${out}/lockkit-${extra}.pc)
  endforeach()
  install(FILES ${files} DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT Development)
endfunction()
