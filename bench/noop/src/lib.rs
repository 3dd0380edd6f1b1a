//! A Proxy-Wasm HTTP filter that does nothing: `make bench` measures it
//! against plain Envoy to show what any Wasm filter costs, and agentroute
//! against it to show what agentroute's own logic adds.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext};
    use proxy_wasm::types::LogLevel;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
    }}

    struct Noop;

    impl Context for Noop {}

    impl HttpContext for Noop {}
}
