//! Host calls that can fail, made through the raw ABI so that every status
//! comes back as a value. The SDK's `hostcalls` functions panic on any
//! status they do not expect (a panic is a wasm trap that fails the
//! stream), and Envoy really returns some of those: `BadArgument` for a
//! header map that is gone (response headers once they went downstream), a
//! buffer out of range, a property it cannot serialise. Header values stay
//! bytes: the SDK's text reads panic on a value that is not UTF-8.
//!
//! Every function here returns the host's status as `Err(status)`.

use proxy_wasm::types::{BufferType, MapType};

/// A host status other than `Ok` (`NotFound` is 1, `BadArgument` 2, ...).
pub type Status = u32;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const EMPTY: u32 = 7;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_grpc_call(
        upstream: *const u8,
        upstream_size: usize,
        service: *const u8,
        service_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_size: usize,
        id: *mut u32,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, token: *mut u32) -> u32;
    fn proxy_enqueue_shared_queue(token: u32, value: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(token: u32, value: *mut *mut u8, value_size: *mut usize) -> u32;
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` must be null or come from the host for this call, `size` long.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

fn status(code: u32) -> Result<(), Status> {
    match code {
        OK => Ok(()),
        s => Err(s),
    }
}

/// The whole header map, serialised (see `wire`).
pub fn get_pairs(map: MapType) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the host writes a buffer it allocated, whose ownership passes
    // to us; `owned` takes it only on success.
    let code = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    status(code).map(|()| unsafe { owned(data, size) })
}

/// Replaces the whole header map.
pub fn set_pairs(map: MapType, serialized: &[u8]) -> Result<(), Status> {
    // SAFETY: the host only reads `serialized` during the call.
    status(unsafe { proxy_set_header_map_pairs(map as u32, serialized.as_ptr(), serialized.len()) })
}

/// One header's value (the first copy), `None` when absent.
pub fn get_header(map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as in `get_pairs`.
    let code = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match code {
        OK => Ok(Some(unsafe { owned(data, size) })),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// Sets a header: replaces its first copy, or adds it.
pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host only reads the slices during the call.
    status(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Adds a copy of a header, keeping the ones there (list headers such as
/// `vary`).
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host only reads the slices during the call.
    status(unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Removes every copy of a header.
pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: the host only reads the slice during the call.
    status(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// `len` bytes of a buffer from `start`; empty when there is none.
pub fn get_buffer(buffer: BufferType, start: usize, len: usize) -> Result<Vec<u8>, Status> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as in `get_pairs`.
    let code = unsafe { proxy_get_buffer_bytes(buffer as u32, start, len, &mut data, &mut size) };
    match code {
        OK => Ok(unsafe { owned(data, size) }),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(s),
    }
}

/// Replaces `len` bytes of a buffer from `start` with `value`.
pub fn set_buffer(
    buffer: BufferType,
    start: usize,
    len: usize,
    value: &[u8],
) -> Result<(), Status> {
    // SAFETY: the host only reads `value` during the call.
    status(unsafe {
        proxy_set_buffer_bytes(buffer as u32, start, len, value.as_ptr(), value.len())
    })
}

/// A property by its path (`["source", "address"]`), `None` when absent.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    // Proxy-Wasm property paths: each segment followed by a NUL.
    let mut serialized = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for segment in path {
        serialized.extend_from_slice(segment.as_bytes());
        serialized.push(0);
    }
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as in `get_pairs`.
    let code =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match code {
        OK => Ok(Some(unsafe { owned(data, size) })),
        NOT_FOUND => Ok(None),
        s => Err(s),
    }
}

/// Sets a property of one path segment (`agentroute.entry`): Envoy keeps
/// it in the stream's filter state as `wasm.<name>`, where access logs
/// read it. A path of several segments would be joined with NUL bytes into
/// one key no access-log format can name.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host copies both slices during the call.
    status(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its version; `(None, None)` for a key never
/// set.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
    // SAFETY: as in `get_pairs`.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match code {
        OK => Ok((Some(unsafe { owned(data, size) }), Some(cas))),
        NOT_FOUND => Ok((None, None)),
        s => Err(s),
    }
}

/// Writes a shared-data value if its version is still `cas` (`None`:
/// unconditionally). `CAS_MISMATCH` says another worker wrote first.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: the host copies both slices during the call.
    status(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// The host status of a lost compare-and-swap.
pub const CAS_MISMATCH: Status = 8;

/// An integer property (Envoy sends int64 and uint64 as 8 bytes,
/// little-endian); `None` when absent or of another shape.
pub fn get_u64_property(path: &[&str]) -> Option<u64> {
    let bytes: [u8; 8] = get_property(path).ok()??.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Answers the stream locally.
pub fn send_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let serialized = crate::wire::serialize(&pairs);
    // SAFETY: the host copies every slice during the call.
    status(unsafe {
        proxy_send_local_response(
            status_code,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

/// A gRPC call whose answer nobody waits for: the SDK's dispatcher never
/// learns the token, so the answer is dropped when it comes. Used for
/// reports after a response, when the stream is ending.
pub fn grpc_call_unawaited(
    service_target: &[u8],
    service: &str,
    method: &str,
    message: &[u8],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let mut token = 0u32;
    let no_metadata = crate::wire::serialize(&[]);
    // SAFETY: the host copies every slice during the call.
    let code = unsafe {
        proxy_grpc_call(
            service_target.as_ptr(),
            service_target.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            no_metadata.as_ptr(),
            no_metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    };
    status(code).map(|()| token)
}

/// Defines a counter (0) or gauge (1).
pub fn define_metric(metric_type: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: the host only reads `name` during the call.
    let code = unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    status(code).map(|()| id)
}

/// Registers this VM's queue `name` (the same name again: the same queue,
/// now read by the calling root context) and returns its token.
pub fn register_shared_queue(name: &str) -> Result<u32, Status> {
    let mut token = 0u32;
    // SAFETY: the host only reads `name` during the call.
    let code = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut token) };
    status(code).map(|()| token)
}

/// Puts `value` on the queue `token` (any VM's).
pub fn enqueue_shared_queue(token: u32, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host copies `value` during the call.
    status(unsafe { proxy_enqueue_shared_queue(token, value.as_ptr(), value.len()) })
}

/// Takes the next value off the queue `token`; `None` once it is empty.
pub fn dequeue_shared_queue(token: u32) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as in `get_pairs`.
    match unsafe { proxy_dequeue_shared_queue(token, &mut data, &mut size) } {
        OK => Ok(Some(unsafe { owned(data, size) })),
        EMPTY => Ok(None),
        s => Err(s),
    }
}

/// Resumes a request (`REQUEST`) the filter paused.
pub fn resume(stream_type: u32) -> Result<(), Status> {
    // SAFETY: no memory is shared.
    status(unsafe { proxy_continue_stream(stream_type) })
}

/// Resets a request (`REQUEST`) stream.
pub fn reset(stream_type: u32) -> Result<(), Status> {
    // SAFETY: no memory is shared.
    status(unsafe { proxy_close_stream(stream_type) })
}

pub const REQUEST: u32 = 0;
