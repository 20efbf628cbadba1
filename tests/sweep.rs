//! End to end: the `sweep` example runs the real `train_pets` binary on the
//! bundled fixture for two tiny configurations (and one whose flag
//! `train_pets` rejects) and ranks them; a second invocation finds both good
//! runs complete and does not run them again.

mod support;

use std::process::Command;

use support::{example, temp_dir, text, train_pets};

#[test]
fn sweep_ranks_two_tiny_configurations_and_continues() {
    let (Some(sweep), Some(_)) = (example("sweep"), train_pets()) else {
        return;
    };
    let dir = temp_dir("sweep");
    let configs = dir.path().join("configs.txt");
    let tiny = "--size 16 --state 8 --hidden 16 --batch 4 --mini-unroll 4 --target 8";
    std::fs::write(
        &configs,
        format!(
            "# two tiny recipes and a broken one\ntiny-a {tiny}\n\ntiny-b {tiny} --lr 1e-3\n\
             broken --no-such-flag 1\n"
        ),
    )
    .expect("write configs");
    let out = dir.path().join("out");
    let command = || {
        let mut cmd = Command::new(&sweep);
        cmd.env_remove("CA_PETS_DIR")
            .current_dir(dir.path())
            .arg("--configs")
            .arg(&configs)
            .args(["--seeds", "0", "--cpu-minutes", "5", "--lanes", "2"])
            .args(["--at", "10", "--out"])
            .arg(&out)
            .args(["--", "--steps", "3", "--eval-every", "2"]);
        cmd
    };
    let first = command().output().expect("start sweep");
    assert!(first.status.success(), "{}", text(&first));

    let md = std::fs::read_to_string(out.join("sweep.md")).expect("sweep.md");
    for rank in ["| 1 | tiny-", "| 2 | tiny-"] {
        assert!(md.lines().any(|l| l.starts_with(rank)), "{md}");
    }
    for name in ["tiny-a", "tiny-b"] {
        assert!(md.contains(&format!("| {name} |")), "{md}");
    }
    // The failed run is ranked last, marked, and did not stop the sweep.
    assert!(
        md.lines()
            .any(|l| l.starts_with("| 3 | broken | `--no-such-flag 1` | 0/1 | - |")),
        "{md}"
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("broken seed 0: FAILED"), "{}", text(&first));

    let csv = std::fs::read_to_string(out.join("sweep.csv")).expect("sweep.csv");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert_eq!(rows[2][..2], ["broken", "0"], "{csv}");
    assert_eq!(rows[2][8], "failed", "{csv}");
    for row in &rows[..2] {
        assert_eq!(row.len(), 9, "{csv}");
        assert_eq!(row[8], "ok", "{csv}");
        assert_eq!(row[2], "3", "steps reached: {csv}");
        for value in &row[3..8] {
            let v: f64 = value.parse().unwrap_or(f64::NAN);
            assert!(v.is_finite(), "{value:?} in {csv}");
        }
    }
    let png = std::fs::metadata(out.join("curves.png")).expect("curves.png");
    assert!(png.len() > 1000, "curves.png is {} bytes", png.len());
    for name in ["tiny-a", "tiny-b"] {
        let log = out.join(name).join("seed-0").join("log.txt");
        assert!(log.is_file(), "{}", log.display());
    }

    // The same command again: both runs are complete and are not run again.
    let second = command().output().expect("start sweep");
    assert!(second.status.success(), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert_eq!(
        stdout.matches("already complete").count(),
        2,
        "{}",
        text(&second)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.csv")).expect("sweep.csv"),
        csv
    );
}
