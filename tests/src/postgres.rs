//! The throwaway PostgreSQL cluster the test command starts (`tests/postgres.sh`).

/// A new, empty database on the test cluster, or `None` when no cluster is configured
/// (`QUEQIAO_TEST_POSTGRES_URL`). With `QUEQIAO_REQUIRE_POSTGRES` set, a missing cluster
/// is an error rather than a skip, so CI cannot silently test SQLite only.
pub async fn fresh_database() -> Option<String> {
    let Ok(admin_url) = std::env::var("QUEQIAO_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("QUEQIAO_REQUIRE_POSTGRES").is_err(),
            "QUEQIAO_REQUIRE_POSTGRES is set but QUEQIAO_TEST_POSTGRES_URL is not"
        );
        eprintln!("QUEQIAO_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
        return None;
    };
    use sqlx::Connection;
    let name = format!(
        "queqiao_e2e_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("URL with a database name");
    Some(format!("{base}/{name}"))
}
