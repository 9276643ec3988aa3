//! Why a Modbus poll fails, in the shared health terms (`ecogate_meter_last_failure`'s
//! `reason` label and the status page's words), and the exception codes' label values.

use crate::sources::health::Reason;

/// The reasons a poll fails. A device's `last_failure` holds an index in this list plus one.
pub const FAILURE_REASONS: &[Reason] = &[
    Reason {
        code: "timeout",
        en: "timeout",
        zh: "超时无应答",
    },
    Reason {
        code: "exception",
        en: "Modbus exception",
        zh: "设备返回异常码",
    },
    Reason {
        code: "transport_error",
        en: "connection failed",
        zh: "通信中断",
    },
    Reason {
        code: "bad_response",
        en: "answer did not decode",
        zh: "应答无法解析",
    },
    Reason {
        code: "connect_error",
        en: "cannot connect",
        zh: "无法连接网关或串口",
    },
];

/// The `code` label values of `ecogate_modbus_exceptions_total`.
pub const EXCEPTION_LABELS: &[&str] = &[
    "illegal_function",
    "illegal_data_address",
    "illegal_data_value",
    "server_device_failure",
    "acknowledge",
    "server_device_busy",
    "memory_parity_error",
    "gateway_path_unavailable",
    "gateway_target_failed",
    "other",
];
