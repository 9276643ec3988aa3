//! Opening a Modbus connection: TCP, RTU on a serial port, or RTU framing over TCP.

use super::config::{Parity, Transport};
use std::io;
use std::time::Duration;
use tokio_modbus::client::{rtu, tcp, Context};
use tokio_serial::SerialPortBuilderExt;

/// Connects within `within`; a serial port opens at once or fails.
pub async fn connect(transport: &Transport, within: Duration) -> io::Result<Context> {
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
    match transport {
        Transport::Tcp(addr) => {
            let stream = tokio::time::timeout(within, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out())??;
            stream.set_nodelay(true)?;
            Ok(tcp::attach(stream))
        }
        Transport::RtuOverTcp(addr) => {
            let stream = tokio::time::timeout(within, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out())??;
            stream.set_nodelay(true)?;
            Ok(rtu::attach(stream))
        }
        Transport::Rtu(serial) => {
            let port = tokio_serial::new(serial.path.to_string_lossy(), serial.baud)
                .parity(match serial.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(match serial.data_bits {
                    5 => tokio_serial::DataBits::Five,
                    6 => tokio_serial::DataBits::Six,
                    7 => tokio_serial::DataBits::Seven,
                    _ => tokio_serial::DataBits::Eight,
                })
                .stop_bits(if serial.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                })
                .open_native_async()
                .map_err(io::Error::other)?;
            Ok(rtu::attach(port))
        }
    }
}
