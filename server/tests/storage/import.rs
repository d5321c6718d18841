use meterhub::registry::import::{Event, ImportReport, import_file};
use meterhub::storage::Store;

use crate::{now, stores};

/// Imports a file; returns the report and every error reported, as printed.
async fn import(store: &Store, path: &std::path::Path) -> (ImportReport, Vec<String>) {
    let mut errors = Vec::new();
    let report = import_file(store, path, now(), |e| {
        if let Event::Refused(e) = e {
            errors.push(e.to_string());
        }
    })
    .await
    .expect("import");
    (report, errors)
}

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
        let (report, errors) = import(&f.store, &csv).await;
        assert_eq!(
            (report.inserted, report.updated, report.unchanged),
            (2, 0, 0)
        );
        assert_eq!(
            errors,
            [
                "line 3: serial: bad check digit: expected 8, found 3",
                "line 5: serial: 12261000012355 already appears on line 4",
                "line 6: applicationId: \"not-a-uuid\" is not a UUID",
                "line 6: usageType: \"farm\" is not one of residential, commercial, industrial, public",
                "line 6: productionDate: \"2026-13-01\" is not a day of the calendar",
                "line 6: reportingIntervalMinutes: 5 is out of range 15–10080",
            ]
        );
        let (again, _) = import(&f.store, &csv).await;
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
        let (report, errors) = import(&f.store, &first).await;
        assert_eq!(report.inserted, 1);
        assert!(
            errors.iter().all(|e| e.starts_with("line 3: ")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("line 3: devEui: ")));
        let (report, _) = import(&f.store, &moved).await;
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
        import(&f.store, &a).await;
        let (report, errors) = import(&f.store, &b).await;
        assert_eq!((report.inserted, report.refused), (0, 1));
        assert_eq!(
            errors,
            ["line 2: serial: serial 12261000012348 is registered to devEui 70b3d5e75e000001"]
        );
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_meter_list_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = file(&dir, "y.csv", "serial,colour\n1,red\n");
    let missing = file(&dir, "z.csv", "serial,devEui\n1,2\n");
    for f in stores().await {
        for (path, expected) in [
            (&unknown, "line 1: unknown column \"colour\""),
            (
                &missing,
                "line 1: the header has no column applicationId, bodyNumber",
            ),
        ] {
            let err = import_file(&f.store, path, now(), |_| {})
                .await
                .expect_err("a bad header");
            assert!(format!("{err:#}").contains(expected), "{err:#}");
        }
        let nothing = dir.path().join("nothing.csv");
        let err = import_file(&f.store, &nothing, now(), |_| {})
            .await
            .expect_err("no file");
        assert!(format!("{err:#}").contains("nothing.csv"), "{err:#}");
    }
}

/// One unknown field, one short row or one malformed value is that row's error, reported with
/// every other error of the row; the rows around it are registered.
#[tokio::test]
async fn a_bad_row_is_refused_with_all_its_errors_and_the_others_are_registered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = file(
        &dir,
        "m.json",
        &format!(
            "[\n{{\"serial\": \"12261000012348\", \"devEui\": \"70b3d5e75e000001\", \"applicationId\": \"{APP}\", \
             \"bodyNumber\": 1, \"userId\": \"u1\", \"region\": \"north\", \"usageType\": \"residential\", \
             \"mode\": \"credit\", \"productionDate\": \"2026-03-15\", \"colour\": \"red\"}},\n\
             {{\"serial\": \"12261000012355\", \"devEui\": \"70b3d5e75e000002\", \"applicationId\": \"{APP}\", \
             \"bodyNumber\": 2, \"userId\": \"u2\", \"region\": \"north\", \"usageType\": \"residential\", \
             \"mode\": \"credit\", \"productionDate\": \"26-01-01\"}},\n\
             {{\"serial\": \"12261000012363\", \"devEui\": \"70b3d5e75e000003\", \"applicationId\": \"{APP}\", \
             \"bodyNumber\": 3, \"userId\": \"u3\", \"region\": \"north\", \"usageType\": \"residential\", \
             \"mode\": \"credit\", \"productionDate\": \"2026-03-15\"}}\n]"
        ),
    );
    let csv = file(
        &dir,
        "m.csv",
        &format!(
            "{HEADER}\n\
             12261000012371,70b3d5e75e000011,{APP},1,u1,north,residential,credit,2026-03-15,\n\
             12261000012389,70b3d5e75e000012,{APP},2,u2,north\n\
             12261000012397,70b3d5e75e000013,{APP},3,u3,north,residential,credit,0000-01-01,1\n\
             12261000012371,70b3d5e75e000011,{APP},4,u4,north,residential,credit,2026-03-15,\n\
             12261000012405,70b3d5e75e000015,{APP},5,u5,north,residential,credit,2026-1-5,\n\
             12261000012413,70b3d5e75e000016,{APP},6,u6,north,residential,credit,2026-07-24,\n\
             12261000012421,70b3d5e75e000017,{APP},7,u7,north,residential,credit,1990-01-01,\n"
        ),
    );
    for f in stores().await {
        let (report, errors) = import(&f.store, &json).await;
        assert_eq!(
            errors,
            [
                "line 2: colour: unknown field; expected serial, devEui, applicationId, bodyNumber, userId, region, usageType, mode, productionDate, reportingIntervalMinutes, joinEui, appKey",
                "line 3: productionDate: \"26-01-01\" is not a date YYYY-MM-DD",
            ]
        );
        assert_eq!((report.read, report.inserted, report.refused), (3, 1, 2));
        let (report, errors) = import(&f.store, &csv).await;
        assert_eq!(
            errors,
            [
                "line 3: has 6 fields where the header has 10",
                "line 4: productionDate: 0000-01-01 is before 1990-01-01",
                "line 4: reportingIntervalMinutes: 1 is out of range 15–10080",
                "line 5: devEui: 70b3d5e75e000011 already appears on line 2",
                "line 5: serial: 12261000012371 already appears on line 2",
                "line 6: productionDate: \"2026-1-5\" is not a date YYYY-MM-DD",
                "line 7: productionDate: 2026-07-24 is in the future (today is 2026-07-23)",
            ]
        );
        assert_eq!((report.read, report.inserted, report.refused), (7, 2, 5));
    }
}

/// A batch that fails as a whole (another writer registering one of its serials between the
/// batch's lookup and its write would do it) is registered again meter by meter: a conflict is
/// its row's error and the other rows are registered. PostgreSQL only: a trigger there refuses
/// every statement that writes more than one meter, which fails each batch and no single row;
/// SQLite's triggers run per row and cannot tell a batch from a row.
#[tokio::test]
async fn a_batch_that_fails_as_a_whole_is_registered_meter_by_meter() {
    let Some(db) = test_support::TestDb::create(test_support::Dialect::Postgres).await else {
        return;
    };
    let store = Store::connect(db.url(), 4).await.expect("connect");
    store.migrate(now()).await.expect("migrate");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = file(
        &dir,
        "first.csv",
        &format!(
            "{HEADER}\n12261000012348,70b3d5e75e000001,{APP},1,u1,north,residential,credit,2026-03-15,\n"
        ),
    );
    import(&store, &first).await;
    let Store::Postgres(pool) = &store else {
        unreachable!("postgres store")
    };
    for sql in [
        "CREATE FUNCTION refuse_batches() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF (SELECT count(*) FROM written) > 1 THEN \
             RAISE EXCEPTION 'a statement writing % meters', (SELECT count(*) FROM written); \
           END IF; \
           RETURN NULL; \
         END $$",
        "CREATE TRIGGER refuse_batches AFTER INSERT ON meters REFERENCING NEW TABLE AS written \
         FOR EACH STATEMENT EXECUTE FUNCTION refuse_batches()",
    ] {
        sqlx::query(sql).execute(pool).await.expect(sql);
    }
    // The trigger does refuse a batch, and lets a single meter through.
    let batch = [crate::meter(100), crate::meter(101)];
    assert!(store.register_meter_batch(&batch, now()).await.is_err());
    store
        .register_meter(&crate::meter(102), now())
        .await
        .expect("one meter");
    let (a, b) = (crate::meter(200), crate::meter(201));
    let second = file(
        &dir,
        "second.csv",
        &format!(
            "{HEADER}\n\
             {},{},{APP},2,u2,north,residential,credit,2026-03-15,\n\
             12261000012348,70b3d5e75e0000ff,{APP},9,u9,north,residential,credit,2026-03-15,\n\
             {},{},{APP},3,u3,south,commercial,prepaid,2026-03-15,60\n",
            a.serial, a.dev_eui, b.serial, b.dev_eui
        ),
    );
    let (report, errors) = import(&store, &second).await;
    assert_eq!(
        (report.inserted, report.refused),
        (2, 1),
        "{report:?} {errors:?}"
    );
    assert_eq!(
        errors,
        ["line 3: serial: serial 12261000012348 is registered to devEui 70b3d5e75e000001"]
    );
    for dev_eui in [&a.dev_eui, &b.dev_eui] {
        assert!(
            store
                .meter_by_dev_eui(dev_eui)
                .await
                .expect("query")
                .is_some(),
            "{dev_eui} registered"
        );
    }
}

#[tokio::test]
async fn keys_in_an_import_are_stored_with_their_meters_and_bad_ones_refuse_the_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "000102030405060708090A0B0C0D0E0F";
    let csv = file(
        &dir,
        "keys.csv",
        &format!(
            "{HEADER},joinEui,appKey\n\
             12261000012348,70b3d5e75e000001,{APP},1,u1,north,residential,credit,2026-03-15,,70B3D57ED0000000,{key}\n\
             12261000012355,70b3d5e75e000003,{APP},3,u3,south,commercial,prepaid,2026-03-15,60,,\n\
             12261000012363,70b3d5e75e000005,{APP},5,u5,south,commercial,prepaid,2026-03-15,60,70b3d57ed0000000,{key}zz\n"
        ),
    );
    for f in stores().await {
        let (report, errors) = import(&f.store, &csv).await;
        assert_eq!((report.inserted, report.refused), (2, 1), "{errors:?}");
        assert_eq!(
            errors,
            ["line 4: appKey: must be 32 hexadecimal digits, got 34 characters"]
        );
        let meters = f.store.synced_meters().await.expect("read");
        let keyed: Vec<(&str, Option<&str>)> = meters
            .iter()
            .map(|m| {
                (
                    m.dev_eui.as_str(),
                    m.keys.as_ref().map(|k| k.app_key.as_str()),
                )
            })
            .collect();
        assert_eq!(
            keyed,
            [
                ("70b3d5e75e000001", Some("000102030405060708090a0b0c0d0e0f")),
                ("70b3d5e75e000003", None),
            ]
        );
    }
}
