//! Drift check for the generated gRPC code: regenerates it from `proto/` with protox (no
//! `protoc`) and compares with the checked-in `src/gen/`. `UPDATE_PROTO=1` rewrites it.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn generated_code_is_fresh() {
    let root = workspace_root();
    let proto_dir = root.join("proto");
    let file = proto_dir.join("shuyu/v1/shuyu.proto");
    let fds = protox::compile([&file], [&proto_dir]).expect("proto files compile");

    let out = tempfile::tempdir().expect("temp dir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");

    let generated =
        std::fs::read_to_string(out.path().join("shuyu.v1.rs")).expect("generated file");
    let checked_in_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen/shuyu.v1.rs");
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    if generated != checked_in {
        if std::env::var_os("UPDATE_PROTO").is_some() {
            std::fs::write(&checked_in_path, generated).expect("write generated code");
        } else {
            panic!(
                "src/gen/shuyu.v1.rs is stale: run `UPDATE_PROTO=1 cargo test -p shuyu-proto --test sourcegen`"
            );
        }
    }
}
