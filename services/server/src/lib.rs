//! The composition root of scalable-chat as a library: [`app::Application`] builds any role on
//! either adapter family and runs it until stopped. The `chat-server` binary is a thin CLI over
//! it; tests start roles in-process through it.

pub mod app;
#[cfg(feature = "embedded")]
mod embedded;
mod family;
pub mod memory;
#[cfg(feature = "production")]
mod production;
pub mod shutdown;
pub mod telemetry;
mod web;

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Auth,
    Group,
    Message,
    Chat,
    All,
    Migrate,
}

impl Role {
    /// The role named `s` on the command line.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gateway" => Some(Role::Gateway),
            "auth" => Some(Role::Auth),
            "group" => Some(Role::Group),
            "message" => Some(Role::Message),
            "chat" => Some(Role::Chat),
            "all" => Some(Role::All),
            "migrate" => Some(Role::Migrate),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Auth => "auth",
            Role::Group => "group",
            Role::Message => "message",
            Role::Chat => "chat",
            Role::All => "all",
            Role::Migrate => "migrate",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Role::Auth => 3004,
            Role::Group => 3002,
            Role::Message => 3003,
            Role::Chat => 3001,
            _ => 5000,
        }
    }
    pub fn runs_auth(self) -> bool {
        matches!(self, Role::Auth | Role::All)
    }
    pub fn runs_group(self) -> bool {
        matches!(self, Role::Group | Role::All)
    }
    pub fn runs_message(self) -> bool {
        matches!(self, Role::Message | Role::All)
    }
    pub fn runs_chat(self) -> bool {
        matches!(self, Role::Chat | Role::All)
    }
    pub fn runs_gateway(self) -> bool {
        matches!(self, Role::Gateway | Role::All)
    }
}
