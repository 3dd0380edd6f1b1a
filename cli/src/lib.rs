//! agentroute's command line, as a library: the `agentroute` binary
//! (`main.rs`) only parses arguments and prints. Everything it does is a
//! pure function here, on top of the filter's own library:
//! - [`check`]: find plugin configurations in what users deploy and run
//!   them through the filter's reader, compiler and request decision.

//! - [`rules`]: one run of `agentroute check` as a report, with the rules
//!   across configurations and objects (HTTPRoutes, stop-iteration patches).

//! - [`generate`]: the agent platforms' resources (agentic-layer, KAOS,
//!   Omnia) as a plugin configuration, Istio or Envoy Gateway manifests, or
//!   an Envoy bootstrap.

//! - [`reference`]: the configuration reference as Markdown, from the JSON
//!   Schema (`agentroute schema --markdown`).

pub mod check;
pub mod generate;
pub mod reference;
pub mod rules;
