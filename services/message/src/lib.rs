//! The message role of scalable-chat (in progress; see README status).
