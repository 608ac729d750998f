//! A room-event WebSocket client for tests: connects to `/ws/rooms/{room}`, records every
//! event, and sends JSON messages.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A connected member.
pub struct RoomSocket {
    outgoing: mpsc::UnboundedSender<Message>,
    /// Every JSON event received, in order.
    pub events: Arc<Mutex<Vec<Value>>>,
    /// Set when the server closed the connection.
    pub closed: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoomSocket {
    /// Connects (with a token in the query when given) and waits for `welcome`.
    pub async fn connect(
        base: &str,
        room: &str,
        token: Option<&str>,
    ) -> anyhow::Result<RoomSocket> {
        let ws_base = base.replacen("http", "ws", 1);
        let url = match token {
            Some(token) => format!("{ws_base}/ws/rooms/{room}?token={token}"),
            None => format!("{ws_base}/ws/rooms/{room}"),
        };
        let (stream, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connect {url}"))?;
        let (mut sink, mut source) = stream.split();
        let events = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let (events2, closed2) = (Arc::clone(&events), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = queue.recv() => match message {
                        Some(message) => {
                            if sink.send(message).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = sink.close().await;
                            break;
                        }
                    },
                    incoming = source.next() => match incoming {
                        Some(Ok(Message::Text(text))) => {
                            if let Ok(value) = serde_json::from_str::<Value>(text.as_str()) {
                                lock(&events2).push(value);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            *lock(&closed2) = Some(frame.map(|f| f.reason.to_string()).unwrap_or_default());
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(err)) => {
                            *lock(&closed2) = Some(err.to_string());
                            break;
                        }
                        None => {
                            lock(&closed2).get_or_insert_with(String::new);
                            break;
                        }
                    },
                }
            }
        });
        let socket = RoomSocket {
            outgoing,
            events,
            closed,
            task,
        };
        socket
            .wait_for(Duration::from_secs(10), |e| e["type"] == "welcome")
            .await?;
        Ok(socket)
    }

    /// Sends a JSON value as a text frame.
    pub fn send(&self, value: &Value) {
        let _ = self.outgoing.send(Message::Text(value.to_string().into()));
    }

    /// Sends raw text.
    pub fn send_raw(&self, text: String) {
        let _ = self.outgoing.send(Message::Text(text.into()));
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.events).clone()
    }

    /// Events of one type.
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Waits until an event matching `check` has arrived (returns it).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = lock(&self.events).iter().find(|e| check(e)).cloned() {
                return Ok(found);
            }
            if let Some(reason) = lock(&self.closed).clone() {
                bail!(
                    "connection closed ({reason}) before the event arrived; got {:?}",
                    self.events()
                );
            }
            if Instant::now() > deadline {
                bail!("timed out; events: {:?}", self.events());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the server closed the connection (and why).
    pub fn closed(&self) -> Option<String> {
        lock(&self.closed).clone()
    }

    /// Closes the connection.
    pub async fn close(self) {
        drop(self.outgoing);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
