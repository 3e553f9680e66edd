//! UpdateConnectorSchedule: validation of the cron spec and timezone, the preview of the
//! next runs in UTC, and the stored schedule. The scheduler queues a sync when a run is
//! due, and it queues runs missed while the server was down only once.

mod common;

use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use common::{
    TestServer, connector_of, create, create_delegated_request, delete_request, expect_code, expect_invalid, get,
    lifecycle::{claim_scheduled_syncs, list_all_syncs, poll_until, schedule_request, set_schedule, sleep_past, start_again, worker_for},
    update_request,
};
use connectord::pb::{self, sync::State, sync::Trigger};
use tonic::Code;

/// Cron spec that runs every second. Six-field specs start with the seconds field.
const EVERY_SECOND: &str = "*/1 * * * * *";
/// Runs previewed by UpdateConnectorSchedule.
const PREVIEW_RUNS: usize = 5;

/// Returns the UTC instant of a daily cron run at local `time` on `date` in `timezone`.
/// In a repeated hour the run is at the first of the two instants. In a skipped hour it
/// is at `gap_end`, the first valid local time after the gap.
fn local_run(timezone: Tz, date: chrono::NaiveDate, time: NaiveTime, gap_end: NaiveTime) -> DateTime<Utc> {
    let local = match timezone.from_local_datetime(&date.and_time(time)) {
        LocalResult::Single(instant) => instant,
        LocalResult::Ambiguous(first, _) => first,
        LocalResult::None => timezone.from_local_datetime(&date.and_time(gap_end)).single().expect("the gap ends at a valid time"),
    };
    local.with_timezone(&Utc)
}

async fn schedule_rejects_bad_cron_spec() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    // The last two parse, but no date ever matches them.
    let bad_specs = ["61 * * * *", "* * *", "0 0 * * * * * *", "@reboot", "every day at noon", "0 25 * * *", "0 0 30 2 *", "0 0 31 4 *"];
    for spec in bad_specs {
        let result = client.update_connector_schedule(schedule_request(&connector, spec, "UTC")).await;
        let status = result.expect_err(&format!("spec {spec:?}: expected INVALID_ARGUMENT"));
        assert_eq!(status.code(), Code::InvalidArgument, "spec {spec:?}: {status:?}");
        let fields = common::violation_fields(&status);
        assert_eq!(fields, ["cron.cron_spec"], "spec {spec:?}: violations name the wrong field");
    }

    let unchanged = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(unchanged.schedule, None, "a rejected schedule was stored");
}

async fn schedule_rejects_bad_timezone() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    for timezone in ["Mars/Olympus", "Europe/Berln", "+02:00", "CEST "] {
        let result = client.update_connector_schedule(schedule_request(&connector, "0 3 * * *", timezone)).await;
        let status = expect_invalid(result, "cron.timezone");
        let description = common::violation_description(&status, "cron.timezone");
        assert!(description.contains(timezone.trim()), "timezone {timezone:?}: description lacks the value: {description}");
    }
}

async fn schedule_of_missing_or_deleted_connector_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    client.delete(delete_request("app-1", &connector.id)).await.expect("delete");

    expect_code(client.update_connector_schedule(schedule_request(&connector, "0 3 * * *", "")).await, Code::FailedPrecondition);

    let mut unknown = schedule_request(&connector, "0 3 * * *", "");
    unknown.connector_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned();
    expect_code(client.update_connector_schedule(unknown).await, Code::NotFound);
}

async fn schedule_previews_five_utc_runs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let before = Utc::now();

    let runs = set_schedule(&mut client, &connector, "0 12 * * *", "").await;

    assert_eq!(runs.len(), PREVIEW_RUNS);
    assert!(runs[0] > before, "the first run {} is not in the future", runs[0]);
    assert!(runs[0] <= before + chrono::Duration::days(1), "the first run {} is more than a day away", runs[0]);
    for run in &runs {
        assert_eq!((run.hour(), run.minute(), run.second()), (12, 0, 0), "run {run} is not at 12:00 UTC");
    }
    for pair in runs.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::days(1), "runs {} and {} are not a day apart", pair[0], pair[1]);
    }
}

async fn schedule_runs_follow_timezone_offset() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let half_past_two = NaiveTime::from_hms_opt(2, 30, 0).expect("valid time");
    let three = NaiveTime::from_hms_opt(3, 0, 0).expect("valid time");

    // Berlin switches between UTC+1 and UTC+2, and 02:30 is skipped or repeated on the
    // switch days. The exact DST cases are unit tests of the cron schedule, because the
    // API computes previews from the current time.
    let berlin = chrono_tz::Europe::Berlin;
    let runs = set_schedule(&mut client, &connector, "30 2 * * *", "Europe/Berlin").await;
    assert_eq!(runs.len(), PREVIEW_RUNS);
    for run in &runs {
        let local_date = run.with_timezone(&berlin).date_naive();
        assert_eq!(*run, local_run(berlin, local_date, half_past_two, three), "run {run} is not 02:30 in Berlin");
    }
    for pair in runs.windows(2) {
        let first_day = pair[0].with_timezone(&berlin).date_naive();
        let second_day = pair[1].with_timezone(&berlin).date_naive();
        assert_eq!(second_day, first_day.succ_opt().expect("next day"), "runs {} and {} skip a day", pair[0], pair[1]);
    }

    // Kolkata is UTC+05:30 all year, so midnight there is 18:30 UTC the day before.
    let runs = set_schedule(&mut client, &connector, "0 0 * * *", "Asia/Kolkata").await;
    for run in &runs {
        assert_eq!((run.hour(), run.minute()), (18, 30), "run {run} is not midnight in Kolkata");
    }

    // Weekdays at 09:00 in New York, which is UTC-5 or UTC-4.
    let new_york = chrono_tz::America::New_York;
    let runs = set_schedule(&mut client, &connector, "0 9 * * 1-5", "America/New_York").await;
    let nine = NaiveTime::from_hms_opt(9, 0, 0).expect("valid time");
    for run in &runs {
        let local = run.with_timezone(&new_york);
        assert!(!matches!(local.weekday(), Weekday::Sat | Weekday::Sun), "run {run} is on a weekend in New York");
        assert_eq!(*run, local_run(new_york, local.date_naive(), nine, nine), "run {run} is not 09:00 in New York");
    }
}

async fn schedule_is_stored_on_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    // Whitespace around the spec, such as the newline of a value read from a file, is
    // not stored.
    set_schedule(&mut client, &connector, " 30 2 * * *\n", "Europe/Berlin").await;

    let scheduled = get(&mut client, "app-1", &connector.id).await;
    let expected = pb::ConnectorScheduleCron { cron_spec: "30 2 * * *".to_owned(), timezone: "Europe/Berlin".to_owned() };
    assert_eq!(scheduled.schedule, Some(expected));
    assert_ne!(scheduled.etag, connector.etag, "the etag did not change with the schedule");

    let removal = schedule_request(&connector, "", "");
    let response = client.update_connector_schedule(removal).await.expect("remove the schedule").into_inner();
    assert!(response.next_runs.is_empty(), "a removed schedule previews runs: {:?}", response.next_runs);
    let unscheduled = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(unscheduled.schedule, None, "the schedule was not removed");
}

async fn due_schedule_queues_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    let runs = set_schedule(&mut client, &connector, EVERY_SECOND, "").await;
    for pair in runs.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "runs {} and {} are not a second apart", pair[0], pair[1]);
    }

    let scheduled = poll_until("a scheduled sync is queued", Duration::from_secs(4), || {
        let mut client = client.clone();
        let connector = connector.clone();
        async move { list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().next() }
    })
    .await;
    assert_eq!(scheduled.trigger(), Trigger::Schedule);
    assert_eq!(scheduled.state(), State::Pending);
}

async fn scheduled_runs_keep_the_etag() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    set_schedule(&mut client, &connector, EVERY_SECOND, "").await;
    let scheduled = get(&mut client, "app-1", &connector.id).await;

    // The first due run queues a sync, and the runs after it are skipped while it is pending.
    poll_until("a scheduled sync is queued", Duration::from_secs(4), || {
        let mut client = client.clone();
        let connector = connector.clone();
        async move { list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().next() }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let after_runs = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(after_runs.etag, scheduled.etag, "a scheduled run changed the etag");
    assert_eq!(after_runs.updated_at, scheduled.updated_at, "a scheduled run changed updated_at");
    let mut update = update_request(&scheduled, &["description"]);
    let edited = update.connector.as_mut().expect("connector");
    edited.description = "edited while scheduled".to_owned();
    edited.etag = scheduled.etag.clone();
    let updated = client.update(update).await.expect("update with the etag read before the runs").into_inner();
    let updated = updated.connector_view.and_then(|view| view.connector).expect("connector");
    assert_ne!(updated.etag, scheduled.etag, "the update did not change the etag");
}

async fn deleted_connector_gets_no_scheduled_runs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let deleted = create(&mut client, "app-1", "deleted").await;
    let control = create(&mut client, "app-1", "control").await;
    let mut control_worker = worker_for(&server, &mut client, &control).await;
    set_schedule(&mut client, &deleted, EVERY_SECOND, "").await;
    client.delete(delete_request("app-1", &deleted.id)).await.expect("delete");
    let cancelled_before = list_all_syncs(&mut client, &deleted, State::Unspecified).await;

    // Both schedules are due on every tick, so two scheduled syncs of the control connector
    // show two ticks that also handled the deleted connector.
    set_schedule(&mut client, &control, EVERY_SECOND, "").await;
    claim_scheduled_syncs(&client, &mut control_worker, &control, 2).await;

    let syncs = list_all_syncs(&mut client, &deleted, State::Unspecified).await;
    assert_eq!(syncs, cancelled_before, "the deleted connector got scheduled syncs");
    let pending = list_all_syncs(&mut client, &deleted, State::Pending).await;
    assert!(pending.is_empty(), "the deleted connector has a pending sync: {pending:?}");
}

async fn connector_without_config_gets_no_scheduled_runs() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let response = client.create_delegated(create_delegated_request("app-1", "awaiting owners")).await.expect("create delegated");
    let delegated = connector_of(response.into_inner().connector_view);
    let control = create(&mut client, "app-1", "control").await;
    let mut control_worker = worker_for(&server, &mut client, &control).await;
    set_schedule(&mut client, &delegated, EVERY_SECOND, "").await;

    // Both schedules are due on every tick, so two scheduled syncs of the control connector
    // show two ticks that also handled the connector without a config.
    set_schedule(&mut client, &control, EVERY_SECOND, "").await;
    claim_scheduled_syncs(&client, &mut control_worker, &control, 2).await;

    let syncs = list_all_syncs(&mut client, &delegated, State::Unspecified).await;
    assert!(syncs.is_empty(), "the connector without a config got scheduled syncs: {syncs:?}");
}

async fn missed_runs_after_restart_queue_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    // Three runs a few seconds from now in consecutive seconds. The spec repeats them every
    // minute, so no other run falls inside this test.
    let first_run = DateTime::from_timestamp(Utc::now().timestamp() + 3, 0).expect("valid time");
    let missed: Vec<DateTime<Utc>> = (0..3).map(|offset| first_run + chrono::Duration::seconds(offset)).collect();
    let seconds: Vec<String> = missed.iter().map(|run| run.second().to_string()).collect();
    let spec = format!("{} * * * * *", seconds.join(","));
    let preview = set_schedule(&mut client, &connector, &spec, "UTC").await;
    assert_eq!(preview[..3], missed[..], "the preview does not start with the three runs of {spec}");
    drop(client);

    let (data_dir, options) = server.stop().await;
    assert!(Utc::now() < first_run, "the server stopped only after the first run was due; the test cannot tell missed runs apart");
    sleep_past(missed[2]).await;
    let server = start_again(data_dir, options).await;
    let mut client = server.client().await;

    let scheduled = poll_until("the missed runs queue a sync", Duration::from_secs(4), || {
        let mut client = client.clone();
        let connector = connector.clone();
        async move { list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().next() }
    })
    .await;
    assert_eq!(scheduled.trigger(), Trigger::Schedule);
    let restored = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(restored.schedule.as_ref().map(|schedule| schedule.cron_spec.as_str()), Some(spec.as_str()));

    // Claim the sync, so a pending sync cannot hide a second queued run. Then wait for two
    // more timer ticks, which the scheduled syncs of a second connector make visible.
    let mut worker = worker_for(&server, &mut client, &connector).await;
    assert_eq!(worker.claim_one().await.id, scheduled.id);
    let control = create(&mut client, "app-1", "control").await;
    let mut control_worker = worker_for(&server, &mut client, &control).await;
    set_schedule(&mut client, &control, EVERY_SECOND, "").await;
    claim_scheduled_syncs(&client, &mut control_worker, &control, 2).await;

    let syncs = list_all_syncs(&mut client, &connector, State::Unspecified).await;
    assert_eq!(syncs.len(), 1, "the missed runs queued more than one sync: {syncs:?}");
}

async fn schedule_request_without_cron_is_rejected() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    set_schedule(&mut client, &connector, "0 3 * * *", "UTC").await;
    let scheduled = get(&mut client, "app-1", &connector.id).await;

    let mut without_cron = schedule_request(&connector, "0 4 * * *", "UTC");
    without_cron.schedule = None;
    let status = expect_invalid(client.update_connector_schedule(without_cron).await, "cron");
    let description = common::violation_description(&status, "cron");
    assert!(description.contains("empty cron_spec"), "the description does not say how to remove a schedule: {description}");

    let timezone_only = schedule_request(&connector, "", "Europe/Berlin");
    let status = expect_invalid(client.update_connector_schedule(timezone_only).await, "cron.timezone");
    let description = common::violation_description(&status, "cron.timezone");
    assert!(description.contains("Europe/Berlin"), "the description lacks the value: {description}");

    assert_eq!(get(&mut client, "app-1", &connector.id).await, scheduled, "a rejected request changed the schedule");
}

async fn update_rejects_schedule_path() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    set_schedule(&mut client, &connector, "0 3 * * *", "UTC").await;
    let scheduled = get(&mut client, "app-1", &connector.id).await;

    for path in ["schedule", "schedule.cron_spec", "schedule.timezone"] {
        let mut request = update_request(&connector, &[path]);
        request.connector.as_mut().expect("connector").schedule =
            Some(pb::ConnectorScheduleCron { cron_spec: "0 4 * * *".to_owned(), timezone: "UTC".to_owned() });
        let status = expect_invalid(client.update(request).await, "update_mask.paths[0]");
        let description = common::violation_description(&status, "update_mask.paths[0]");
        assert!(description.contains("UpdateConnectorSchedule"), "path {path}: description does not name the RPC: {description}");
    }

    assert_eq!(get(&mut client, "app-1", &connector.id).await, scheduled, "a rejected update changed the connector");
}

crate::both_backends!(
    schedule_rejects_bad_cron_spec,
    schedule_rejects_bad_timezone,
    schedule_of_missing_or_deleted_connector_fails,
    schedule_previews_five_utc_runs,
    schedule_runs_follow_timezone_offset,
    schedule_is_stored_on_connector,
    due_schedule_queues_sync,
    scheduled_runs_keep_the_etag,
    deleted_connector_gets_no_scheduled_runs,
    connector_without_config_gets_no_scheduled_runs,
    missed_runs_after_restart_queue_once,
    schedule_request_without_cron_is_rejected,
    update_rejects_schedule_path,
);
