// refinery embeds migrations/ at compile time (db::migrations): an incremental build must notice
// a new or changed migration file.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
