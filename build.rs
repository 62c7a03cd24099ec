//! Finds the PostgreSQL server to build against, generates the bindings we
//! use, and compiles the C shim.
//!
//! The server is named by `PG_CONFIG` (else `pg_config` on PATH), exactly as
//! PGXS does, so `make USE_PGXS=1 PG_CONFIG=...` and `cargo build` agree.
//! Every way this can fail ends in one line that says what to install.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

/// The majors the whole test suite has passed on (README "Supported
/// versions"); any other is refused, since its backup API is unchecked.
const FIRST_MAJOR: u32 = 15;
const LAST_MAJOR: u32 = 19;

fn fail(msg: &str) -> ! {
    // cargo prints a failed build script's stderr; keep it to one line.
    eprintln!("error: pg_exclusive_backup: {msg}");
    exit(1);
}

fn pg_config(pg_config: &str, arg: &str) -> String {
    let out = Command::new(pg_config).arg(arg).output().unwrap_or_else(|e| {
        fail(&format!(
            "cannot run pg_config ({pg_config}: {e}); install the PostgreSQL server \
             development package (Debian: postgresql-server-dev-NN, RHEL: postgresqlNN-devel) \
             or set PG_CONFIG=/path/to/pg_config"
        ))
    });
    if !out.status.success() {
        fail(&format!(
            "{pg_config} {arg} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Reads `#define NAME value` from pg_config.h: the headers, not the
/// pg_config binary, decide the ABI we compile against.
fn header_define(pg_config_h: &str, name: &str) -> Option<String> {
    pg_config_h.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#define"), Some(n), value) if n == name => Some(value.unwrap_or("").to_string()),
            _ => None,
        }
    })
}

fn main() {
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/bindings.h");
    println!("cargo:rerun-if-changed=src/lib.rs");
    for major in FIRST_MAJOR..=LAST_MAJOR {
        println!("cargo::rustc-check-cfg=cfg(pg{major})");
    }
    println!("cargo::rustc-check-cfg=cfg(pg16_plus)");
    println!("cargo::rustc-check-cfg=cfg(pg_assert_enabled)");

    let pg_config_bin = env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".into());
    let server_inc = PathBuf::from(pg_config(&pg_config_bin, "--includedir-server"));
    println!("cargo:rerun-if-changed={}", server_inc.join("pg_config.h").display());

    let pg_config_h = fs::read_to_string(server_inc.join("pg_config.h")).unwrap_or_else(|_| {
        fail(&format!(
            "PostgreSQL server headers not found in {} ({}); install postgresql-server-dev-NN \
             (Debian/Ubuntu) or postgresqlNN-devel (RHEL)",
            server_inc.display(),
            pg_config(&pg_config_bin, "--version")
        ))
    });
    if !server_inc.join("postgres.h").exists() {
        fail(&format!(
            "{} has no postgres.h; install postgresql-server-dev-NN (Debian/Ubuntu) or postgresqlNN-devel (RHEL)",
            server_inc.display()
        ));
    }

    let version_num: u32 = header_define(&pg_config_h, "PG_VERSION_NUM")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fail("cannot read PG_VERSION_NUM from pg_config.h"));
    let major = version_num / 10000;
    if major < FIRST_MAJOR {
        fail(&format!(
            "PostgreSQL {major} is not supported: it still has its own exclusive backup mode; \
             this extension needs PostgreSQL {FIRST_MAJOR} or later"
        ));
    }
    if major > LAST_MAJOR {
        fail(&format!(
            "PostgreSQL {major} is newer than the last major this extension knows ({LAST_MAJOR}); \
             its backup API must be checked before it is supported"
        ));
    }
    println!("cargo:rustc-cfg=pg{major}");
    if major >= 16 {
        println!("cargo:rustc-cfg=pg16_plus");
    }
    if header_define(&pg_config_h, "USE_ASSERT_CHECKING").is_some() {
        println!("cargo:rustc-cfg=pg_assert_enabled");
    }
    println!("cargo:rustc-env=PEB_PG_VERSION_NUM={version_num}");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    generate_bindings(&server_inc, &out_dir);
    compile_shim(&server_inc);
}

fn generate_bindings(server_inc: &Path, out_dir: &Path) {
    // bindgen panics when it cannot load libclang; turn that into our one line.
    let inc = server_inc.to_path_buf();
    let result = std::panic::catch_unwind(move || {
        if !clang_sys_available() {
            return Err("libclang not found".to_string());
        }
        bindgen::Builder::default()
            .header("csrc/bindings.h")
            .clang_arg(format!("-I{}", inc.display()))
            .clang_arg("-Icsrc")
            .clang_arg("-Wno-ignored-attributes")
            .clang_args(test_hooks().then_some("-DPEB_TEST_HOOKS"))
            .use_core()
            .layout_tests(false)
            .derive_default(true)
            .generate_comments(false)
            // Only what the extension uses: keeps the build fast and makes any
            // change of these signatures between majors a compile error.
            .allowlist_function("RecoveryInProgress")
            .allowlist_function("get_backup_status")
            .allowlist_function("do_pg_backup_start")
            .allowlist_function("do_pg_backup_stop")
            .allowlist_function("build_backup_content")
            .allowlist_function("makeStringInfo")
            .allowlist_function("palloc0")
            .allowlist_function("text_to_cstring")
            .allowlist_function("DetermineTimeZoneAbbrevOffset")
            .allowlist_function("peb_.*")
            .allowlist_function("pfree")
            .allowlist_function("pg_usleep")
            .allowlist_function("dsm_create")
            .allowlist_function("dsm_attach")
            .allowlist_function("dsm_detach")
            .allowlist_function("dsm_segment_address")
            .allowlist_function("dsm_segment_map_length")
            .allowlist_function("dsm_segment_handle")
            .allowlist_function("on_dsm_detach")
            .allowlist_function("before_shmem_exit")
            .allowlist_function("proc_exit")
            .allowlist_function("GetBackgroundWorkerPid")
            .allowlist_function("TerminateBackgroundWorker")
            .allowlist_type("FunctionCallInfoBaseData")
            .allowlist_type("Pg_finfo_record")
            .allowlist_type("Pg_magic_struct")
            .allowlist_type("ErrorData")
            .allowlist_type("BgwHandleStatus")
            .rustified_enum("BgwHandleStatus")
            .allowlist_type("BackupState")
            .allowlist_type("SessionBackupState")
            .allowlist_type("pg_tm")
            .allowlist_var("log_timezone")
            .allowlist_var("PgStartTime")
            .allowlist_var("MAXPGPATH")
            .allowlist_var("PEB_.*")
            .rustified_enum("SessionBackupState")
            .generate()
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(b)) => b
            .write_to_file(out_dir.join("bindings.rs"))
            .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}"))),
        Ok(Err(e)) if e.contains("libclang") => fail_libclang(),
        Ok(Err(e)) => fail(&format!("bindgen failed on the server headers: {e}")),
        Err(_) => fail_libclang(),
    }
}

fn clang_sys_available() -> bool {
    // bindgen's "runtime" feature loads libclang with dlopen; probe the usual
    // places first so a missing library is reported, not panicked about.
    if env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let dirs = [
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ];
    let in_dir = |d: &Path| {
        fs::read_dir(d).map_or(false, |it| {
            it.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("libclang")
                    && e.file_name().to_string_lossy().contains(".so")
            })
        })
    };
    dirs.iter().any(|d| in_dir(Path::new(d)))
        || fs::read_dir("/usr/lib").map_or(false, |it| {
            it.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("llvm"))
                .any(|e| in_dir(&e.path().join("lib")))
        })
}

fn fail_libclang() -> ! {
    fail("libclang not found (bindgen needs it); install libclang-dev (Debian/Ubuntu) or clang-devel (RHEL), or set LIBCLANG_PATH")
}

/// Whether the `test-hooks` feature is on (cargo tells build scripts so).
fn test_hooks() -> bool {
    env::var_os("CARGO_FEATURE_TEST_HOOKS").is_some()
}

/// The C types of the Rust types that cross to C in the functions the shim
/// calls back.
fn c_type(rust: &str) -> Option<&'static str> {
    Some(match rust {
        "usize" => "Size",
        "bool" => "bool",
        "i32" => "int32",
        "u32" => "uint32",
        "Datum" => "Datum",
        "*mut c_void" => "void *",
        "*mut c_char" => "char *",
        "*const c_char" => "const char *",
        _ => return None,
    })
}

/// Writes `peb_exports.h`: the C declaration of every function src/lib.rs
/// defines as `pub extern "C" fn peb_...` in so many words, from its Rust
/// signature, so that the shim cannot call one with other types than Rust
/// defines it with (its calls are compiled against these declarations).
fn write_exports_header(out_dir: &Path) {
    let lib = fs::read_to_string("src/lib.rs").unwrap_or_else(|e| fail(&format!("cannot read src/lib.rs: {e}")));
    let mut header = String::from(
        "/* Written by build.rs from src/lib.rs: the Rust functions the shim calls. */\n\
         #ifndef PEB_EXPORTS_H\n#define PEB_EXPORTS_H\n\n",
    );
    // Comments are left out; a callback the scan cannot read (another ABI,
    // `unsafe`) fails the build here, and one it misses fails the shim's
    // compile (implicit declarations are errors).
    let code: String = lib
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for odd in ["extern \"C-unwind\" fn peb_", "unsafe extern \"C\" fn peb_"] {
        if code.contains(odd) {
            fail(&format!(
                "src/lib.rs: write the shim's callbacks as `pub extern \"C\" fn peb_...`, not {odd}"
            ));
        }
    }
    let mut rest = code.as_str();
    let mut names = Vec::new();
    while let Some(at) = rest.find("pub extern \"C\" fn peb_") {
        rest = &rest[at + "pub extern \"C\" fn ".len()..];
        let open = rest
            .find('(')
            .unwrap_or_else(|| fail("src/lib.rs: an export without arguments"));
        let name = &rest[..open];
        names.push(name.to_string());
        let close = rest
            .find(')')
            .unwrap_or_else(|| fail("src/lib.rs: an export without ')'"));
        let args = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let ret = after[..after.find('{').unwrap_or(0)].trim();
        let ret = match ret.strip_prefix("->") {
            None => "void",
            Some(t) => c_type(t.trim()).unwrap_or_else(|| fail(&format!("{name}: no C type for {t}"))),
        };
        let params: Vec<String> = args
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                let (arg, ty) = a
                    .split_once(':')
                    .unwrap_or_else(|| fail(&format!("{name}: argument {a}")));
                let c = c_type(ty.trim()).unwrap_or_else(|| fail(&format!("{name}: no C type for {ty}")));
                format!("{c} {}", arg.trim())
            })
            .collect();
        let params = if params.is_empty() {
            "void".to_string()
        } else {
            params.join(", ")
        };
        header.push_str(&format!("extern {ret} {name}({params});\n"));
    }
    header.push_str("\n#endif\n");
    check_worker_names(&names, &code);
    fs::write(out_dir.join("peb_exports.h"), header)
        .unwrap_or_else(|e| fail(&format!("cannot write peb_exports.h: {e}")));
}

/// The postmaster finds a background worker's main function by the name
/// the shim writes into bgw_function_name: each such name must be one that
/// src/lib.rs exports (the compiler cannot see a string).
fn check_worker_names(exported: &[String], lib: &str) {
    let shim = fs::read_to_string("csrc/shim.c").unwrap_or_else(|e| fail(&format!("cannot read csrc/shim.c: {e}")));
    let shim = without_c_comments(&shim);
    // What dlsym finds: an unmangled symbol.
    let unmangled = |name: &str| {
        lib.split("#[no_mangle]").skip(1).any(|after| {
            after
                .trim_start()
                .strip_prefix("pub extern \"C\" fn ")
                .is_some_and(|rest| rest.starts_with(&format!("{name}(")))
        })
    };
    let mut found = 0;
    for line in shim.lines().filter(|l| l.contains("bgw_function_name")) {
        let Some(name) = line.split('"').nth(1) else {
            fail(&format!(
                "csrc/shim.c: bgw_function_name set from something else than a literal: {line}"
            ));
        };
        if !exported.iter().any(|e| e == name) || !unmangled(name) {
            fail(&format!(
                "csrc/shim.c names the worker function \"{name}\", which src/lib.rs does not export as `#[no_mangle] pub extern \"C\" fn`"
            ));
        }
        found += 1;
    }
    if found == 0 {
        fail("csrc/shim.c: no bgw_function_name found to check");
    }
}

/// C source with its comments blanked out (string literals holding
/// comment markers are not expected in the shim).
fn without_c_comments(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    let mut rest = c;
    loop {
        let block = rest.find("/*").unwrap_or(usize::MAX);
        let line = rest.find("//").unwrap_or(usize::MAX);
        if block == usize::MAX && line == usize::MAX {
            out.push_str(rest);
            return out;
        }
        let (at, end) = if block < line { (block, "*/") } else { (line, "\n") };
        out.push_str(&rest[..at]);
        match rest[at..].find(end) {
            // A line comment keeps its newline.
            Some(e) if end == "\n" => rest = &rest[at + e..],
            Some(e) => rest = &rest[at + e + end.len()..],
            None => return out,
        }
    }
}

fn compile_shim(server_inc: &Path) {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    write_exports_header(&out_dir);
    let mut build = cc::Build::new();
    if test_hooks() {
        build.define("PEB_TEST_HOOKS", None);
    }
    build
        .file("csrc/shim.c")
        .include(server_inc)
        .include("csrc")
        .include(&out_dir)
        .warnings(true)
        // PostgreSQL's own headers trip these under -Wextra.
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .flag_if_supported("-Wno-sign-compare")
        .flag_if_supported("-Wno-clobbered")
        .flag_if_supported("-fno-strict-aliasing")
        .flag_if_supported("-fwrapv")
        // A declaration a major moved to another header must fail the
        // build, not become an int-returning guess that crashes at run time.
        .flag_if_supported("-Werror=implicit-function-declaration")
        .flag_if_supported("-Werror=int-conversion")
        .compile("peb_shim");
}
