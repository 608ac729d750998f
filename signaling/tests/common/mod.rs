//! Helpers shared by the signaling integration tests.
#![allow(dead_code)]

/// A unique suffix for temp names.
pub fn rand_suffix() -> String {
    format!("{}_{}", std::process::id(), rand::random::<u32>())
}

/// Creates a new database on the test cluster and returns its URL.
pub async fn fresh_postgres_database() -> Option<String> {
    let Ok(admin_url) = std::env::var("QUEQIAO_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("QUEQIAO_REQUIRE_POSTGRES").is_err(),
            "QUEQIAO_REQUIRE_POSTGRES is set but QUEQIAO_TEST_POSTGRES_URL is not"
        );
        eprintln!("QUEQIAO_TEST_POSTGRES_URL not set: PostgreSQL half of the test skipped");
        return None;
    };
    use sqlx::Connection;
    let name = format!("queqiao_{}", rand_suffix());
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

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
