//! The contract's standard types and annotations: `Customer.date_of_birth`
//! (google.type.Date) beside the deprecated `birth_date` string, periods
//! echoed as google.type.Interval, and the google.api resource and
//! field_behavior annotations read back from the descriptor set the server
//! serves.

use customer_knowledge::pb::{FILE_DESCRIPTOR_SET, v1 as pb};
use prost_reflect::{DescriptorPool, MessageDescriptor, Value};
use prost_types::{FieldMask, Timestamp};
use tonic::Code;

use crate::helpers::{Caller, TestApp, violated_fields};

fn date(year: i32, month: i32, day: i32) -> Option<pb::Date> {
    Some(pb::Date { year, month, day })
}

#[allow(deprecated)] // `birth_date` is still accepted from older callers.
fn customer(birth_date: &str, date_of_birth: Option<pb::Date>) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: "欧阳锋".into(),
            kind: pb::customer::Kind::Individual as i32,
            home_branch: "B01".into(),
            birth_date: birth_date.into(),
            date_of_birth,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The date a customer answers in both fields: (birth_date, date_of_birth).
#[allow(deprecated)]
fn dates(c: &pb::Customer) -> (&str, Option<pb::Date>) {
    (c.birth_date.as_str(), c.date_of_birth)
}

#[tokio::test]
async fn date_of_birth_and_birth_date_are_one_date_and_must_agree() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;

    // Sent as a google.type.Date only: both fields answer it.
    let by_date = rm
        .create_customer(customer("", date(1977, 7, 31)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&by_date), ("1977-07-31", date(1977, 7, 31)));
    // Sent as the old string only: both fields answer it.
    let by_text = rm
        .create_customer(customer("1985-12-01", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&by_text), ("1985-12-01", date(1985, 12, 1)));
    // Both, agreeing.
    let both = rm
        .create_customer(customer("2000-02-29", date(2000, 2, 29)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&both), ("2000-02-29", date(2000, 2, 29)));

    // Both, disagreeing; a partial date; a date that is not in the calendar.
    for (text, d, field) in [
        ("1977-07-31", date(1977, 7, 30), "customer.date_of_birth"),
        ("", date(1977, 0, 0), "customer.date_of_birth"),
        ("", date(1977, 2, 29), "customer.date_of_birth"),
        ("1977-02-29", None, "customer.birth_date"),
    ] {
        let status = rm.create_customer(customer(text, d)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{text} {d:?}");
        assert_eq!(violated_fields(&status), [field], "{text} {d:?}");
    }

    // An update naming date_of_birth changes the one date; disagreeing
    // values are refused there too; an empty date under the mask clears it.
    let update = |d: Option<pb::Date>, text: &str, paths: &[&str]| {
        let mut c = customer(text, d).customer.unwrap();
        c.name = by_date.name.clone();
        pb::UpdateCustomerRequest {
            customer: Some(c),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            ..Default::default()
        }
    };
    let moved = rm
        .update_customer(update(date(1977, 8, 1), "", &["date_of_birth"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&moved), ("1977-08-01", date(1977, 8, 1)));
    let status = rm
        .update_customer(update(
            date(1977, 8, 2),
            "1977-08-03",
            &["birth_date", "date_of_birth"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["customer.date_of_birth"]);
    let cleared = rm
        .update_customer(update(None, "", &["date_of_birth"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&cleared), ("", None));

    // An analyst sees the year only, in both fields.
    let seen = app
        .customers(&Caller::analyst())
        .await
        .get_customer(pb::GetCustomerRequest {
            name: by_text.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&seen), ("1985-**-**", date(1985, 0, 0)));
}

#[tokio::test]
async fn the_basic_view_hides_date_of_birth_as_it_hides_birth_date() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let created = rm
        .create_customer(customer("", date(1977, 7, 31)))
        .await
        .unwrap()
        .into_inner();
    let list = |view: pb::View| pb::ListCustomersRequest {
        view: view as i32,
        ..Default::default()
    };
    let basic = rm
        .list_customers(list(pb::View::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(basic.customers[0].name, created.name);
    assert_eq!(dates(&basic.customers[0]), ("", None));
    let full = rm
        .list_customers(list(pb::View::Full))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dates(&full.customers[0]), ("1977-07-31", date(1977, 7, 31)));
    // A read mask may ask for it alone.
    let masked = rm
        .get_customer(pb::GetCustomerRequest {
            name: created.name.clone(),
            read_mask: Some(FieldMask {
                paths: vec!["date_of_birth".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        masked,
        pb::Customer {
            date_of_birth: date(1977, 7, 31),
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn reports_echo_their_period_as_an_interval() {
    let app = TestApp::spawn().await;
    let at = |seconds| Timestamp { seconds, nanos: 0 };
    // 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z.
    let (start, end) = (1_793_491_200, 1_796_083_200);
    let summary = app
        .interactions(&Caller::analyst())
        .await
        .get_complaint_summary(pb::GetComplaintSummaryRequest {
            name: String::new(),
            branch: String::new(),
            start_time: Some(at(start)),
            end_time: Some(at(end)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.start_time, Some(at(start)));
    assert_eq!(summary.end_time, Some(at(end)));
    assert_eq!(
        summary.interval,
        Some(pb::Interval {
            start_time: Some(at(start)),
            end_time: Some(at(end)),
        })
    );
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap()
}

/// The resources: what a standard Get (AIP-131) answers, when it has a
/// resource name (`string name = 1`, or a later number for the reports that
/// became singleton resources, AIP-156).
fn resources(pool: &DescriptorPool) -> Vec<MessageDescriptor> {
    let mut found: Vec<MessageDescriptor> = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let output = method.output();
            let named = output
                .get_field_by_name("name")
                .is_some_and(|f| f.kind() == prost_reflect::Kind::String);
            if method.name().starts_with("Get")
                && output.package_name() == "bank.customerknowledge.v1"
                && named
                && !found.iter().any(|m| m.full_name() == output.full_name())
            {
                found.push(output);
            }
        }
    }
    found
}

#[test]
fn every_resource_and_request_field_is_annotated() {
    let pool = pool();
    let resource = pool.get_extension_by_name("google.api.resource").unwrap();
    let behavior = pool
        .get_extension_by_name("google.api.field_behavior")
        .unwrap();
    let resources = resources(&pool);
    let mut names: Vec<_> = resources.iter().map(|m| m.name().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Campaign",
            "CampaignResults",
            "ComplaintSummary",
            "Customer",
            "Customer360",
            "FollowUp",
            "Interaction",
            "KnowledgeFlow",
            "KnowledgeItem",
            "KnowledgeSharingMetrics",
            "SegmentSummary",
            "ServiceMetrics",
            "ServiceRequest"
        ]
    );
    let mut missing = Vec::new();
    for message in &resources {
        let options = message.options();
        if !options.has_extension(&resource) {
            missing.push(format!("{}: no google.api.resource", message.full_name()));
            continue;
        }
        // The pattern names the resource as the service does.
        let descriptor = options.get_extension(&resource);
        let descriptor = descriptor.as_message().unwrap();
        let patterns = descriptor.get_field_by_name("pattern").unwrap();
        // One pattern for a collection's resources; a scoped report has one
        // per way it can be narrowed.
        let singleton = message.get_field(1).is_none_or(|f| f.name() != "name");
        let count = patterns.as_list().unwrap().len();
        assert!(
            count == 1 || singleton && count > 1,
            "{}: {count} patterns",
            message.name()
        );
        let kind = descriptor.get_field_by_name("type").unwrap();
        assert_eq!(
            kind.as_str(),
            Some(format!("customerknowledge.bank/{}", message.name()).as_str())
        );
    }
    // Only resources are declared as resources.
    for message in pool.all_messages() {
        if message.options().has_extension(&resource)
            && !resources
                .iter()
                .any(|r| r.full_name() == message.full_name())
        {
            missing.push(format!("{}: not a resource", message.full_name()));
        }
    }
    let requests = pool
        .services()
        .flat_map(|s| s.methods().map(|m| m.input()).collect::<Vec<_>>())
        .filter(|m| m.package_name() == "bank.customerknowledge.v1");
    for message in resources.iter().cloned().chain(requests) {
        for field in message.fields() {
            let options = field.options();
            let annotated = options.has_extension(&behavior)
                && matches!(&*options.get_extension(&behavior), Value::List(l) if !l.is_empty());
            if !annotated {
                missing.push(format!("{}: no field_behavior", field.full_name()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The patterns match the names the service really gives its resources.
#[tokio::test]
async fn resource_patterns_match_the_names_the_service_gives() {
    let app = TestApp::spawn().await;
    let pool = pool();
    let resource = pool.get_extension_by_name("google.api.resource").unwrap();
    let pattern = |message: &str| -> String {
        let m = pool
            .get_message_by_name(&format!("bank.customerknowledge.v1.{message}"))
            .unwrap();
        let options = m.options();
        let value = options.get_extension(&resource);
        let patterns = value
            .as_message()
            .unwrap()
            .get_field_by_name("pattern")
            .unwrap();
        patterns.as_list().unwrap()[0].as_str().unwrap().to_string()
    };
    let matches = |pattern: &str, name: &str| {
        let (p, n): (Vec<_>, Vec<_>) = (pattern.split('/').collect(), name.split('/').collect());
        p.len() == n.len()
            && p.iter().zip(&n).all(|(p, n)| {
                if p.starts_with('{') {
                    !n.is_empty()
                } else {
                    p == n
                }
            })
    };
    let rm = Caller::rm("B01");
    let created = app
        .customers(&rm)
        .await
        .create_customer(customer("", None))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches(&pattern("Customer"), &created.name),
        "{}",
        created.name
    );
    let logged = app
        .interactions(&rm)
        .await
        .log_interaction(pb::LogInteractionRequest {
            parent: created.name.clone(),
            interaction: Some(pb::Interaction {
                channel: pb::interaction::Channel::Phone as i32,
                kind: pb::interaction::Kind::Inquiry as i32,
                summary: "asks about a deposit".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches(&pattern("Interaction"), &logged.name),
        "{}",
        logged.name
    );
    assert!(!matches(&pattern("Interaction"), &created.name));
}
