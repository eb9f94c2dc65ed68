//! deploy/: the Kubernetes manifests (base and overlays) validate against the Kubernetes
//! schemas and our platform rules, and the compose file is consistent (deploy/validate.py).

#[test]
fn deploy_manifests_and_compose_file_are_valid() {
    let python = std::env::var("MEMBERLAKE_DEPLOY_PYTHON")
        .expect("MEMBERLAKE_DEPLOY_PYTHON is not set: deploy/local/test.sh prepares a Python with kubernetes-validate");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/validate.py");
    let out = std::process::Command::new(python).arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("overlays/example") && stdout.contains("deploy/ is valid"), "{stdout}");
}
