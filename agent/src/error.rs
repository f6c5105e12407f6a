//! The agent's error type and the one place it becomes a gRPC status.

use tonic::{Code, Status};

/// What an agent call can fail with; each variant maps to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No such container, checkpoint or operation.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The target is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Anything else, with its causes on one line.
    #[error("{0}")]
    Internal(String),
}

impl From<runtime::Error> for AgentError {
    fn from(e: runtime::Error) -> AgentError {
        use runtime::Error as E;
        let msg = crate::shim::chain(&e);
        match e {
            E::NotFound { .. } => AgentError::NotFound(msg),
            E::InvalidId { .. } | E::InvalidBundle { .. } | E::InvalidCheckpoint { .. } => {
                AgentError::InvalidArgument(msg)
            }
            E::AlreadyExists { .. } => AgentError::AlreadyExists(msg),
            E::WrongState { .. } | E::NotSupported { .. } => AgentError::FailedPrecondition(msg),
            _ => AgentError::Internal(msg),
        }
    }
}

impl From<crate::catalog::CatalogError> for AgentError {
    fn from(e: crate::catalog::CatalogError) -> AgentError {
        AgentError::Internal(crate::shim::chain(&e))
    }
}

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Status {
        let code = match e {
            AgentError::NotFound(_) => Code::NotFound,
            AgentError::InvalidArgument(_) => Code::InvalidArgument,
            AgentError::AlreadyExists(_) => Code::AlreadyExists,
            AgentError::FailedPrecondition(_) => Code::FailedPrecondition,
            AgentError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// Shorthand.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
