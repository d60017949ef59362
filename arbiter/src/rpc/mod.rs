//! gRPC services: wire types are converted by hand here; none enters the core.

pub mod admin_service;
pub mod agent_service;
pub mod identity;
pub mod role;
