//! Request planning: a device's points coalesced into as few reads as the device accepts.
//! Pure; the poller executes the plan.

use std::ops::Range;

/// The four Modbus read functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    Coil,
    DiscreteInput,
    Holding,
    Input,
}

impl Function {
    pub fn parse(text: &str) -> Option<Function> {
        match text {
            "coil" => Some(Function::Coil),
            "discrete_input" | "discrete" => Some(Function::DiscreteInput),
            "holding" => Some(Function::Holding),
            "input" => Some(Function::Input),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Function::Coil => "coil",
            Function::DiscreteInput => "discrete_input",
            Function::Holding => "holding",
            Function::Input => "input",
        }
    }

    /// Largest read the protocol allows.
    pub fn protocol_max(self) -> u16 {
        match self {
            Function::Coil | Function::DiscreteInput => 2000,
            Function::Holding | Function::Input => 125,
        }
    }
}

/// One value to read: where it is and how wide it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub function: Function,
    /// 0-based address on the wire.
    pub address: u16,
    pub width: u16,
}

impl Span {
    fn end(&self) -> u32 {
        self.address as u32 + self.width as u32
    }
}

/// One read request and which points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub function: Function,
    pub address: u16,
    pub count: u16,
    /// (point index, offset of the point's first register within the response).
    pub points: Vec<(usize, u16)>,
}

impl Request {
    pub fn range(&self) -> Range<u32> {
        self.address as u32..self.address as u32 + self.count as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers (or bits) one request may ask for.
    pub max_per_request: u16,
    /// Most unused registers a request may read to join two points.
    pub max_gap: u16,
    /// One request per point, for devices that reject anything else.
    pub single: bool,
}

/// Plans the reads for `points`. Points wider than `max_per_request` get a request of their
/// own (the device must accept at least one value per read).
pub fn plan(points: &[Span], limits: Limits) -> Vec<Request> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].function, points[i].address, points[i].width));
    let mut out: Vec<Request> = Vec::new();
    for i in order {
        let p = points[i];
        let max = limits.max_per_request.min(p.function.protocol_max()).max(1) as u32;
        if !limits.single {
            if let Some(last) = out.last_mut() {
                let end = last.range().end;
                let new_end = end.max(p.end());
                let fits = last.function == p.function
                    && p.address as u32 <= end + limits.max_gap as u32
                    && new_end - last.address as u32 <= max;
                if fits {
                    last.count = (new_end - last.address as u32) as u16;
                    last.points.push((i, p.address - last.address));
                    continue;
                }
            }
        }
        out.push(Request {
            function: p.function,
            address: p.address,
            count: p.width,
            points: vec![(i, 0)],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(address: u16, width: u16) -> Span {
        Span {
            function: Function::Holding,
            address,
            width,
        }
    }

    const DEFAULT: Limits = Limits {
        max_per_request: 125,
        max_gap: 10,
        single: false,
    };

    #[test]
    fn contiguous_and_small_gaps_coalesce() {
        // 0x2000..0x2012 every 2 registers (10 floats) + 0x101E energy far away.
        let mut points: Vec<Span> = (0..10).map(|i| holding(0x2000 + 2 * i, 2)).collect();
        points.push(holding(0x101E, 2));
        let reqs = plan(&points, DEFAULT);
        assert_eq!(reqs.len(), 2);
        assert_eq!((reqs[0].address, reqs[0].count), (0x101E, 2));
        assert_eq!((reqs[1].address, reqs[1].count), (0x2000, 20));
        assert_eq!(reqs[1].points[3], (3, 6));
    }

    #[test]
    fn gap_limit_max_size_functions_and_single_mode() {
        // Gap of 11 registers > 10: two requests.
        assert_eq!(plan(&[holding(0, 2), holding(13, 2)], DEFAULT).len(), 2);
        // Gap of 10: one request of 14 registers.
        let r = plan(&[holding(0, 2), holding(12, 2)], DEFAULT);
        assert_eq!((r.len(), r[0].count), (1, 14));
        // 100 floats in a row with at most 125 per request: 62 + 38 floats.
        let row: Vec<Span> = (0..100).map(|i| holding(2 * i, 2)).collect();
        let r = plan(&row, DEFAULT);
        assert_eq!(r.iter().map(|r| r.count).collect::<Vec<_>>(), vec![124, 76]);
        // Input and holding registers never share a request.
        let mixed = [
            holding(0, 2),
            Span {
                function: Function::Input,
                address: 2,
                width: 2,
            },
        ];
        assert_eq!(plan(&mixed, DEFAULT).len(), 2);
        // Single mode: one request per point.
        assert_eq!(
            plan(
                &row[..5],
                Limits {
                    single: true,
                    ..DEFAULT
                }
            )
            .len(),
            5
        );
        // Overlapping points share registers.
        let r = plan(&[holding(10, 4), holding(12, 2)], DEFAULT);
        assert_eq!((r.len(), r[0].count, r[0].points[1]), (1, 4, (1, 2)));
    }
}
