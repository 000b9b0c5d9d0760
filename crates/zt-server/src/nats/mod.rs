//! Optional publishing of the audit log to NATS JetStream (`zt serve --nats-url`; see
//! docs/NATS.md).
//!
//! A background task tails the committed log and publishes each record's stored line, in
//! `seq` order, to one subject of one stream, with the headers `Nats-Msg-Id:
//! <current_hash of record 0>:<seq>` and `Zt-Seq: <seq>`. A record counts as published only
//! once JetStream has acknowledged it (at least once); after an error or a restart the task
//! resumes at the first record without an acknowledgement, found from the stream's last
//! message on the subject, and JetStream's duplicate window drops what it sends twice. The
//! decision path never waits for NATS: records queue in the log, and the lag shows in
//! `/metrics`.

mod publisher;
mod session;
mod settings;

pub(crate) use publisher::Publisher;
pub use settings::{
    NatsAuth, NatsConfig, NatsSettingError, NatsUrl, StreamName, Subject, DEFAULT_STREAM,
    DEFAULT_SUBJECT,
};
