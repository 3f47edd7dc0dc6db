//! The chat role of scalable-chat (in progress; see README status).
