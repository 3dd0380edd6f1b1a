//! A2A agents behind the gateway: agent cards that point at the gateway
//! ([`card`]), and OpenAI chat completions translated to A2A and back
//! ([`chat`]), reading the agent's answer as an A2A server builds a task
//! ([`answer`]).

pub mod answer;
pub mod card;
pub mod chat;
