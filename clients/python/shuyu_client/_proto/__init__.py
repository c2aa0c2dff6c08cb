"""Generated protobuf and gRPC modules of the Shuyu wire contract.

Do not edit: regenerate with ``python clients/python/tools/gen_stubs.py``
(grpcio-tools==1.85.1).
"""
