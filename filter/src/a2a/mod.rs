//! A2A agents behind the gateway: agent cards that point at the gateway
//! ([`card`]), and OpenAI chat completions translated to A2A and back
//! ([`chat`]).

pub mod card;
pub mod chat;
