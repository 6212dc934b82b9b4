# What Occlum's examples/cpp/ratls/CMakeLists.txt includes as ../cmake/common.cmake (gRPC's
# examples/cpp/cmake/common.cmake, which the grpcio-sys copy of gRPC 1.38 does not ship).
# Written for tests/occlum-cpp/interop.sh: finds the gRPC installed by that script and
# Debian's protobuf, and sets the five variables Occlum's CMakeLists uses.
cmake_minimum_required(VERSION 3.5.1)
set(CMAKE_CXX_STANDARD 11)
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
message(STATUS "Using protobuf ${Protobuf_VERSION}, gRPC ${gRPC_VERSION}")
set(_PROTOBUF_LIBPROTOBUF protobuf::libprotobuf)
set(_PROTOBUF_PROTOC $<TARGET_FILE:protobuf::protoc>)
set(_REFLECTION gRPC::grpc++_reflection)
set(_GRPC_GRPCPP gRPC::grpc++)
set(_GRPC_CPP_PLUGIN_EXECUTABLE $<TARGET_FILE:gRPC::grpc_cpp_plugin>)
