//! The meter profiles: register maps shipped in config/profiles/ (compiled in) or given in
//! `modbus.profiles_dir`, parsed into points a device's channels bind to.

use super::decode::{DataType, WordOrder};
use super::plan::Function;
use crate::units::Unit;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A profile file as shipped in config/profiles/.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: String,
    source: String,
    function: String,
    word_order: String,
    address_base: u8,
    points: BTreeMap<String, RawProfilePoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfilePoint {
    address: u32,
    #[serde(rename = "type")]
    data_type: String,
    #[serde(default)]
    scale: Option<f64>,
    unit: String,
    #[serde(default)]
    ratio: Option<String>,
}

/// The profiles shipped with ecogate, compiled in so that a gateway needs no extra files.
pub const PROFILES: &[(&str, &str)] = &[
    (
        "chint-dtsu666",
        include_str!("../../../config/profiles/chint-dtsu666.toml"),
    ),
    (
        "chint-dtsu666-4000",
        include_str!("../../../config/profiles/chint-dtsu666-4000.toml"),
    ),
    (
        "chint-ddsu666",
        include_str!("../../../config/profiles/chint-ddsu666.toml"),
    ),
    (
        "eastron-sdm630",
        include_str!("../../../config/profiles/eastron-sdm630.toml"),
    ),
    (
        "eastron-sdm120",
        include_str!("../../../config/profiles/eastron-sdm120.toml"),
    ),
    (
        "acrel-adl400",
        include_str!("../../../config/profiles/acrel-adl400.toml"),
    ),
];

/// Which of the device's ratios multiply a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ratio {
    #[default]
    None,
    Ct,
    Pt,
    CtPt,
}

impl Ratio {
    pub(super) fn parse(text: &str) -> Option<Ratio> {
        match text {
            "none" => Some(Ratio::None),
            "ct" => Some(Ratio::Ct),
            "pt" => Some(Ratio::Pt),
            "ct_pt" => Some(Ratio::CtPt),
            _ => None,
        }
    }
}

/// A profile, parsed.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub source: String,
    pub points: BTreeMap<String, ProfilePoint>,
}

#[derive(Debug, Clone)]
pub struct ProfilePoint {
    pub function: Function,
    pub address: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub unit: Unit,
    pub ratio: Ratio,
}

/// Parses a shipped profile. Errors are bugs in the shipped file (a test parses them all).
pub fn parse_profile(text: &str) -> Result<Profile, String> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| e.to_string())?;
    let function = Function::parse(&raw.function).ok_or(format!("function `{}`", raw.function))?;
    let word_order =
        WordOrder::parse(&raw.word_order).ok_or(format!("word_order `{}`", raw.word_order))?;
    let mut points = BTreeMap::new();
    for (name, p) in raw.points {
        let address = p
            .address
            .checked_sub(raw.address_base as u32)
            .and_then(|a| u16::try_from(a).ok())
            .ok_or(format!("point {name}: address out of range"))?;
        points.insert(
            name.clone(),
            ProfilePoint {
                function,
                address,
                data_type: DataType::parse(&p.data_type)
                    .ok_or(format!("point {name}: type `{}`", p.data_type))?,
                word_order,
                scale: p.scale.unwrap_or(1.0),
                unit: Unit::parse(&p.unit).ok_or(format!("point {name}: unit `{}`", p.unit))?,
                ratio: match p.ratio {
                    None => Ratio::None,
                    Some(r) => Ratio::parse(&r).ok_or(format!("point {name}: ratio `{r}`"))?,
                },
            },
        );
    }
    Ok(Profile {
        name: raw.name,
        description: raw.description,
        source: raw.source,
        points,
    })
}

/// The shipped profiles' names.
pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|(n, _)| *n).collect()
}

pub fn profile(name: &str) -> Option<Profile> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| parse_profile(text).ok())
}
