# SPDX-License-Identifier: MIT
# The one list of backends with what each needs. Everything else that names a backend (the
# LOCKKIT_WITH_<NAME> options, src/ and tests/ subdirectories, the tool, the CMake package,
# pkg-config files, Debian package dependencies, the package tests) is derived from it.
#
# A new backend "x": add it to LOCKKIT_BACKENDS and set
#   LOCKKIT_BACKEND_x_WHAT     words for option and .pc descriptions
#   LOCKKIT_BACKEND_x_SCHEMES  the URL schemes it registers
#   LOCKKIT_BACKEND_x_FIND     how a consumer of a static build finds its dependency:
#                              "package;<find_package name>" or
#                              "pkgconfig;<prefix>;<module>[;<module>...]" (the prefix its
#                              CMake file uses)
#   LOCKKIT_BACKEND_x_ALSO     further dependencies found with find_package: "<name> [version]"
#                              items separated by ";" (e.g. "OpenSSL 3")
#   LOCKKIT_BACKEND_x_PC       its dependency in lockkit-x.pc (a Requires.private or Libs.private line)
#   LOCKKIT_BACKEND_x_DEV      the Debian package with its dependency's headers
#   LOCKKIT_BACKEND_x_RUNTIME  a regex for the Debian package with its dependency's library
#   LOCKKIT_BACKEND_x_TOOL     "linked" into the `lockkit` tool, or "module": a module the tool
#                              loads only when a URL needs it (its client library pulls in so
#                              many shared libraries that loading them would cost every command
#                              more than the rest of the tool; see cli/modules.cpp)
set(LOCKKIT_BACKENDS sqlite redis postgres etcd)

set(LOCKKIT_BACKEND_sqlite_WHAT "sqlite:// backend (SQLite)")
set(LOCKKIT_BACKEND_sqlite_SCHEMES sqlite)
set(LOCKKIT_BACKEND_sqlite_FIND package SQLite3)
set(LOCKKIT_BACKEND_sqlite_PC "Requires.private: sqlite3")
set(LOCKKIT_BACKEND_sqlite_DEV libsqlite3-dev)
set(LOCKKIT_BACKEND_sqlite_RUNTIME libsqlite3-0)
set(LOCKKIT_BACKEND_sqlite_TOOL linked)  # the default backend: no module to load

set(LOCKKIT_BACKEND_redis_WHAT "redis://, rediss:// and redlock:// backend (hiredis, OpenSSL)")
set(LOCKKIT_BACKEND_redis_SCHEMES redis rediss redlock)
set(LOCKKIT_BACKEND_redis_FIND pkgconfig HIREDIS hiredis)
set(LOCKKIT_BACKEND_redis_ALSO "OpenSSL 3")
set(LOCKKIT_BACKEND_redis_PC "Requires.private: hiredis libssl libcrypto")
set(LOCKKIT_BACKEND_redis_DEV libhiredis-dev libssl-dev)
set(LOCKKIT_BACKEND_redis_RUNTIME "libhiredis[0-9.]+" libssl3)
set(LOCKKIT_BACKEND_redis_TOOL module)

set(LOCKKIT_BACKEND_postgres_WHAT "postgres:// backend (libpq)")
set(LOCKKIT_BACKEND_postgres_SCHEMES postgres postgresql)
set(LOCKKIT_BACKEND_postgres_FIND package PostgreSQL)
# Debian's libpq.pc lists, for --static, archives only the server's -dev package ships
# (-lpgcommon -lpgport): name the shared libpq itself instead.
set(LOCKKIT_BACKEND_postgres_PC "Libs.private: -lpq")
set(LOCKKIT_BACKEND_postgres_DEV libpq-dev)
set(LOCKKIT_BACKEND_postgres_RUNTIME libpq5)
set(LOCKKIT_BACKEND_postgres_TOOL module)  # libpq brings OpenSSL, Kerberos, LDAP, GnuTLS

set(LOCKKIT_BACKEND_etcd_WHAT "etcd:// backend (gRPC, protobuf)")
set(LOCKKIT_BACKEND_etcd_SCHEMES etcd)
set(LOCKKIT_BACKEND_etcd_FIND pkgconfig ETCD_GRPC grpc++ protobuf)
set(LOCKKIT_BACKEND_etcd_PC "Requires.private: grpc++ protobuf")
set(LOCKKIT_BACKEND_etcd_DEV libgrpc++-dev libprotobuf-dev)
set(LOCKKIT_BACKEND_etcd_RUNTIME "libgrpc\\+\\+[0-9.]+" "libprotobuf[0-9]+")
set(LOCKKIT_BACKEND_etcd_TOOL module)  # gRPC brings abseil, re2, c-ares, OpenSSL, ...

# Components that are not backends (no URL scheme, not part of the tool), with what each needs:
#   LOCKKIT_EXTRA_x_WHAT    words for option and .pc descriptions
#   LOCKKIT_EXTRA_x_HEADER  a header of its header-only dependency (found with find_path, also
#                           by the installed lockkitConfig.cmake: consumers include it too)
#   LOCKKIT_EXTRA_x_DEV     the Debian package with that header
set(LOCKKIT_EXTRAS async)

set(LOCKKIT_EXTRA_async_WHAT "AsyncLockApi on asio (futures, coroutines, callbacks)")
set(LOCKKIT_EXTRA_async_HEADER asio.hpp)
set(LOCKKIT_EXTRA_async_DEV libasio-dev)
# Compile flags every consumer needs (see src/async/CMakeLists.txt).
set(LOCKKIT_EXTRA_async_CFLAGS -DASIO_DISABLE_STD_ALIGNED_ALLOC)
