//! The JSON Schema of the configuration, generated from the contract types
//! (`agentroute schema` prints it; `schema/agentroute.schema.json` is the
//! committed copy). Native only: the `.wasm` never links schemars.

use serde_json::{Map, Value};

use super::contract::RawConfig;

/// The `$id` of the generated schema: a name, not a download address (the
/// file lives in the repository as `schema/agentroute.schema.json`).
pub const SCHEMA_ID: &str = "urn:agentroute:plugin-configuration";

/// The JSON Schema (draft 2020-12) of the plugin configuration, generated
/// from the contract types: `$schema`, `$id`, `title` first, then what
/// schemars derives, in its (stable) order.
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let generated = generator.into_root_schema_for::<RawConfig>().to_value();
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        Value::from("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("$id".into(), Value::from(SCHEMA_ID));
    if let Value::Object(mut fields) = generated {
        fields.remove("$schema");
        for key in ["title", "description"] {
            if let Some(value) = fields.remove(key) {
                out.insert(key.into(), value);
            }
        }
        out.extend(fields);
    }
    Value::Object(out)
}

/// [`schema`] as the committed file holds it: pretty, ending in a newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_draft_2020_12_with_an_id() {
        let s = schema();
        let keys: Vec<&str> = s
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .take(3)
            .collect();
        assert_eq!(keys, ["$schema", "$id", "title"]);
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["additionalProperties"], false);
        assert!(schema_text().ends_with("}\n"));
    }
}
