use meterhub::registry::import_file;

use crate::{now, stores};

const HEADER: &str = "serial,devEui,applicationId,bodyNumber,userId,region,usageType,mode,productionDate,reportingIntervalMinutes";
const APP: &str = "0b7d6a4e-3b44-4b6e-9f3c-0a1c2b3d4e5f";

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[tokio::test]
async fn import_registers_good_rows_reports_bad_ones_and_repeats_harmlessly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = file(
        &dir,
        "meters.csv",
        &format!(
            "{HEADER}\n\
             12261000012348,70b3d5e75e000001,{APP},1,u1,north,residential,credit,2026-03-15,\n\
             12261000012343,70b3d5e75e000002,{APP},2,u2,north,residential,credit,2026-03-15,60\n\
             12261000012355,70b3d5e75e000003,{APP},3,u3,south,commercial,prepaid,2026-03-15,60\n\
             12261000012355,70b3d5e75e000004,{APP},4,u4,south,commercial,prepaid,2026-03-15,60\n\
             12261000012363,70b3d5e75e000005,not-a-uuid,5,u5,south,farm,credit,2026-13-01,5\n"
        ),
    );
    for f in stores().await {
        let report = import_file(&f.store, &csv, now()).await.expect("import");
        assert_eq!(
            (report.inserted, report.updated, report.unchanged),
            (2, 0, 0)
        );
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 3: serial: bad check digit: expected 8, found 3",
                "line 5: serial: 12261000012355 already appears on line 4",
                "line 6: applicationId: \"not-a-uuid\" is not a UUID",
                "line 6: usageType: \"farm\" is not one of residential, commercial, industrial, public",
                "line 6: productionDate: \"2026-13-01\" is not a date YYYY-MM-DD",
                "line 6: reportingIntervalMinutes: 5 is out of range 15–10080",
            ]
        );
        let again = import_file(&f.store, &csv, now())
            .await
            .expect("import again");
        assert_eq!((again.inserted, again.updated, again.unchanged), (0, 0, 2));
        let m = f
            .store
            .meter_by_dev_eui("70b3d5e75e000003")
            .await
            .expect("query")
            .expect("imported");
        assert_eq!(
            (m.mode.as_str(), m.reporting_interval_minutes),
            ("prepaid", 60)
        );
    }
}

#[tokio::test]
async fn json_import_reports_lines_and_updates_changed_meters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = file(
        &dir,
        "a.json",
        &format!(
            "[\n  {{\"serial\": \"12261000012348\", \"devEui\": \"70B3D5E75E000001\", \"applicationId\": \"{APP}\", \
             \"bodyNumber\": 1, \"userId\": \"u1\", \"region\": \"north\", \"usageType\": \"residential\", \
             \"mode\": \"credit\", \"productionDate\": \"2026-03-15\"}},\n  {{\"serial\": \"1\"}}\n]"
        ),
    );
    let moved = file(
        &dir,
        "b.json",
        &format!(
            "[{{\"serial\": \"12261000012348\", \"dev_eui\": \"70b3d5e75e000001\", \"application_id\": \"{APP}\", \
             \"body_number\": \"1\", \"user_id\": \"u1\", \"region\": \"east\", \"usage_type\": \"residential\", \
             \"mode\": \"credit\", \"production_date\": \"2026-03-15\"}}]"
        ),
    );
    for f in stores().await {
        let report = import_file(&f.store, &first, now()).await.expect("import");
        assert_eq!(report.inserted, 1);
        assert!(
            report.errors.iter().all(|e| e.line == 3),
            "{:?}",
            report.errors
        );
        assert!(report.errors.iter().any(|e| e.field == Some("devEui")));
        let report = import_file(&f.store, &moved, now()).await.expect("import");
        assert_eq!((report.inserted, report.updated), (0, 1));
    }
}

#[tokio::test]
async fn a_serial_registered_to_another_device_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = file(
        &dir,
        "a.csv",
        &format!(
            "{HEADER}\n12261000012348,70b3d5e75e000001,{APP},1,u1,north,residential,credit,2026-03-15,\n"
        ),
    );
    let b = file(
        &dir,
        "b.csv",
        &format!(
            "{HEADER}\n12261000012348,70b3d5e75e0000ff,{APP},1,u1,north,residential,credit,2026-03-15,\n"
        ),
    );
    for f in stores().await {
        import_file(&f.store, &a, now()).await.expect("import");
        let report = import_file(&f.store, &b, now()).await.expect("import");
        assert_eq!(report.inserted, 0);
        assert_eq!(report.errors.len(), 1);
        assert!(
            report.errors[0].message.contains("70b3d5e75e000001"),
            "{:?}",
            report.errors
        );
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_meter_list_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = file(&dir, "x.json", "{\"serial\": 1}");
    let unknown = file(&dir, "y.csv", "serial,colour\n1,red\n");
    for f in stores().await {
        assert!(import_file(&f.store, &bad, now()).await.is_err());
        let err = import_file(&f.store, &unknown, now())
            .await
            .expect_err("unknown column");
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
    }
}
