//! The inbox's events as typed schemas in the OpenAPI document: one schema
//! per event (`SignalEvent`: `{"id", "event": "signal", "data": SignalData}`)
//! and `InboxEvent`, one of them, told apart by `event` (a discriminator),
//! so that generated clients narrow an event to its data by its name. The
//! handlers write events by hand (`domain::event`); these schemas only
//! describe them.

use std::collections::BTreeMap;

use utoipa::Modify;
use utoipa::openapi::schema::{
    Discriminator, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::openapi::{OpenApi, RefOr};

/// Every event a long-poll returns, with its data's schema: `ready`, which
/// only a stream sends and which has no id, is not among them.
pub const EVENTS: [(&str, &str); 6] = [
    ("member-joined", "MemberJoinedData"),
    ("member-left", "MemberLeftData"),
    ("member-updated", "MemberUpdatedData"),
    ("signal", "SignalData"),
    ("room-updated", "RoomUpdatedData"),
    ("gap", "GapData"),
];

/// The schema name of an event's own schema: `member-joined` is
/// `MemberJoinedEvent`.
pub fn schema_name(event: &str) -> String {
    let mut name: String = event
        .split('-')
        .map(|word| {
            let mut letters = word.chars();
            letters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + letters.as_str())
                .unwrap_or_default()
        })
        .collect();
    name.push_str("Event");
    name
}

fn reference(schema: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(schema))
}

/// Puts the typed events in the document, `InboxEvent` among them, and has
/// the poll's answer list `InboxEvent`s.
pub struct TypedEvents;

impl Modify for TypedEvents {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut one_of = OneOfBuilder::new().description(Some(
            "One inbox event: long-poll returns these as they are; an SSE stream carries the same \
             three fields as `id:`, `event:` and `data:` (and `ready` first, which has no id). \
             `event` tells which, and so the schema of `data`.",
        ));
        let mut mapping = BTreeMap::new();
        for (event, data) in EVENTS {
            let name = schema_name(event);
            let id_description = if event == "gap" {
                "The event's id in the inbox: for `gap`, its `to`"
            } else {
                "The event's id in the inbox: resume after it with `Last-Event-ID` or `after`"
            };
            let schema = ObjectBuilder::new()
                .description(Some(format!("The `{event}` event.")))
                .property(
                    "id",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Integer))
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(0))
                        .description(Some(id_description)),
                )
                .required("id")
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::String))
                        .enum_values(Some([event])),
                )
                .required("event")
                .property("data", reference(data))
                .required("data");
            components.schemas.insert(name.clone(), schema.into());
            one_of = one_of.item(reference(&name));
            mapping.insert(event.to_owned(), format!("#/components/schemas/{name}"));
        }
        let mut discriminator = Discriminator::new("event");
        discriminator.mapping = mapping;
        let one_of = one_of.discriminator(Some(discriminator)).build();
        components
            .schemas
            .insert("InboxEvent".to_owned(), Schema::OneOf(one_of).into());
        if let Some(RefOr::T(Schema::Object(poll))) = components.schemas.get_mut("PollResponse")
            && let Some(RefOr::T(Schema::Array(events))) = poll.properties.get_mut("events")
        {
            events.items =
                utoipa::openapi::schema::ArrayItems::RefOrSchema(Box::new(reference("InboxEvent")));
        }
        components.schemas.remove("PolledEvent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_schema_is_named_after_it() {
        assert_eq!(schema_name("member-joined"), "MemberJoinedEvent");
        assert_eq!(schema_name("signal"), "SignalEvent");
        assert_eq!(schema_name("room-updated"), "RoomUpdatedEvent");
    }
}
