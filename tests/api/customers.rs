//! CustomerService through the real server: every method, its happy path and
//! each error code it returns.

// The deprecated `birth_date` string is still served and accepted; these
// tests keep using it (tests/api/standard_types.rs covers `date_of_birth`).
#![allow(deprecated)]

use customer_knowledge::pb::v1::{
    self as pb, ConsentPurpose, customer::Kind, customer_link::Relationship,
};
use prost_types::FieldMask;
use tonic::Code;

use crate::helpers::{Bearer, Caller, ISSUER, TestApp, reason, sign, violated_fields};

fn person(name: &str, branch: &str) -> pb::Customer {
    pb::Customer {
        display_name: name.into(),
        kind: Kind::Individual as i32,
        home_branch: branch.into(),
        relationship_manager: "E1001".into(),
        national_id: "110101199003071234".into(),
        phone: "+86 138 0013 8000".into(),
        email: "wei.zhang@example.cn".into(),
        birth_date: "1990-03-07".into(),
        address: "1 Bund Road, Shanghai".into(),
        tags: vec!["wealth".into()],
        preferences: [("contact_channel".to_string(), "MOBILE_APP".to_string())].into(),
        ..Default::default()
    }
}

fn create(customer: pb::Customer) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(customer),
        ..Default::default()
    }
}

fn get(name: &str) -> pb::GetCustomerRequest {
    pb::GetCustomerRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test]
async fn create_then_get_returns_the_profile() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let mut customer = person("张伟", "B01");
    customer.external_ids = vec![pb::ExternalId {
        system: "CIF".into(),
        value: "000123".into(),
    }];
    let created = rm
        .create_customer(create(customer))
        .await
        .unwrap()
        .into_inner();
    assert!(created.name.starts_with("customers/"));
    assert_eq!(created.display_name, "张伟");
    assert_eq!(created.kind, Kind::Individual as i32);
    assert_eq!(created.national_id, "110101199003071234");
    assert_eq!(created.birth_date, "1990-03-07");
    assert_eq!(created.external_ids[0].value, "000123");
    assert!(!created.etag.is_empty());
    assert!(created.create_time.is_some());

    let fetched = rm
        .get_customer(get(&created.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn a_caller_chosen_id_is_used_once() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let request = pb::CreateCustomerRequest {
        customer: Some(person("Li Na", "B01")),
        customer_id: "cif-000777".into(),
        ..Default::default()
    };
    let created = rm
        .create_customer(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "customers/cif-000777");
    let again = rm.create_customer(request).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(reason(&again), "CUSTOMER_ALREADY_EXISTS");
}

#[tokio::test]
async fn invalid_customers_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let request = pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            display_name: "   ".into(),
            kind: 0,
            home_branch: "".into(),
            email: "not-an-email".into(),
            birth_date: "1990-02-30".into(),
            tags: vec!["Wealth".into()],
            external_ids: vec![pb::ExternalId {
                system: "C I F".into(),
                value: "1".into(),
            }],
            ..Default::default()
        }),
        customer_id: "Bad/Id".into(),
        request_id: "not-a-uuid".into(),
    };
    let status = rm.create_customer(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "INVALID_ARGUMENT");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "customer.birth_date",
            "customer.display_name",
            "customer.email",
            "customer.external_ids[0].system",
            "customer.home_branch",
            "customer.kind",
            "customer.tags[0]",
            "customer_id",
            "request_id",
        ]
    );
    // Field names and rules are reported, never the values.
    assert!(!status.message().contains("not-an-email"));

    let missing = rm
        .create_customer(pb::CreateCustomerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&missing), ["customer"]);
}

#[tokio::test]
async fn calls_without_valid_credentials_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let mut anonymous = app.anonymous_customers().await;
    let status = anonymous
        .get_customer(get("customers/x"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "UNAUTHENTICATED");

    let mut claims = Caller::rm("B01").claims();
    claims["exp"] = serde_json::json!(1_000_000);
    let expired = sign(&claims);
    let mut claims = Caller::rm("B01").claims();
    claims["aud"] = serde_json::json!("another-service");
    let wrong_audience = sign(&claims);
    let mut claims = Caller::rm("B01").claims();
    claims["iss"] = serde_json::json!(format!("{ISSUER}/evil"));
    let wrong_issuer = sign(&claims);
    let forged = {
        let token = Caller::admin().token();
        let (rest, _signature) = token.rsplit_once('.').unwrap();
        format!("{rest}.AAAA")
    };
    for token in [
        expired,
        wrong_audience,
        wrong_issuer,
        forged,
        "junk".to_string(),
    ] {
        let mut client = customer_knowledge::pb::v1::customer_service_client::CustomerServiceClient::with_interceptor(
            app.channel().await,
            Bearer::token(&token),
        );
        let status = client.get_customer(get("customers/x")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    }
}

#[tokio::test]
async fn other_branches_are_denied_whether_or_not_the_customer_exists() {
    let app = TestApp::spawn().await;
    let mut b01 = app.customers(&Caller::rm("B01")).await;
    let mut b02 = app.customers(&Caller::teller("B02")).await;
    let created = b01
        .create_customer(create(person("王芳", "B01")))
        .await
        .unwrap()
        .into_inner();

    for name in [created.name.as_str(), "customers/does-not-exist"] {
        let status = b02.get_customer(get(name)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}");
        assert_eq!(reason(&status), "PERMISSION_DENIED");
    }
    let status = b02
        .create_customer(create(person("王芳", "B01")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut admin = app.customers(&Caller::admin()).await;
    let status = admin
        .get_customer(get("customers/does-not-exist"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "RESOURCE_NOT_FOUND");
    assert_eq!(
        admin
            .get_customer(get(&created.name))
            .await
            .unwrap()
            .into_inner()
            .name,
        created.name
    );

    let bad = b01.get_customer(get("accounts/1")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["name"]);

    let no_role = app
        .customers(&Caller::new("E9", Some("B01"), &["intern"]))
        .await
        .get_customer(get(&created.name))
        .await
        .unwrap_err();
    assert_eq!(no_role.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn analysts_read_everything_masked_and_change_nothing() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let created = rm
        .create_customer(create(person("张伟", "B01")))
        .await
        .unwrap()
        .into_inner();

    let mut analyst = app.customers(&Caller::analyst()).await;
    let seen = analyst
        .get_customer(get(&created.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.display_name, "张伟");
    assert_eq!(seen.national_id, "****1234");
    assert_eq!(seen.phone, "****8000");
    assert_eq!(seen.email, "****e.cn");
    assert_eq!(seen.birth_date, "1990-**-**");
    assert_eq!(seen.address, "****");
    let status = analyst
        .create_customer(create(person("X", "B01")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut compliance = app.customers(&Caller::compliance()).await;
    let clear = compliance
        .get_customer(get(&created.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(clear.national_id, "110101199003071234");
    let status = compliance
        .delete_customer(pb::DeleteCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn lookup_finds_a_customer_by_external_id() {
    let app = TestApp::spawn().await;
    let mut service = app.customers(&Caller::service()).await;
    let mut customer = person("Acme Trading", "B01");
    customer.kind = Kind::Corporate as i32;
    customer.external_ids = vec![
        pb::ExternalId {
            system: "CIF".into(),
            value: "C-0042".into(),
        },
        pb::ExternalId {
            system: "MOBILE".into(),
            value: "u-9".into(),
        },
    ];
    let created = service
        .create_customer(create(customer.clone()))
        .await
        .unwrap()
        .into_inner();
    let lookup = |system: &str, value: &str| pb::LookupCustomerRequest {
        system: system.into(),
        value: value.into(),
    };
    let found = service
        .lookup_customer(lookup("MOBILE", "u-9"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.name, created.name);

    // An external id belongs to one customer.
    let status = service.create_customer(create(customer)).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status), "EXTERNAL_ID_ALREADY_EXISTS");

    let status = service
        .lookup_customer(lookup("CIF", "C-9999"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = app
        .customers(&Caller::rm("B02"))
        .await
        .lookup_customer(lookup("CIF", "C-0042"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = service.lookup_customer(lookup("", "x")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["system"]);
}

#[tokio::test]
async fn update_changes_masked_fields_under_the_etag() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let created = rm
        .create_customer(create(person("Zhang Wei", "B01")))
        .await
        .unwrap()
        .into_inner();
    let update = |customer: pb::Customer, paths: &[&str]| pb::UpdateCustomerRequest {
        customer: Some(customer),
        update_mask: mask(paths),
        ..Default::default()
    };

    let mut change = created.clone();
    change.display_name = "Zhang Wei (Walter)".into();
    change.tags = vec!["vip-prospect".into()];
    change.phone = "garbage that is not in the mask".into();
    let updated = rm
        .update_customer(update(change.clone(), &["display_name", "tags"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "Zhang Wei (Walter)");
    assert_eq!(updated.tags, ["vip-prospect"]);
    assert_eq!(updated.phone, created.phone);
    assert_ne!(updated.etag, created.etag);

    // The etag read before the update is stale now.
    let status = rm
        .update_customer(update(change.clone(), &["display_name"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(reason(&status), "ETAG_MISMATCH");

    let status = rm
        .update_customer(update(updated.clone(), &["tier", "etag", "nickname"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "update_mask.paths[0]",
            "update_mask.paths[1]",
            "update_mask.paths[2]"
        ]
    );

    let mut bad = updated.clone();
    bad.email = "nope".into();
    let status = rm
        .update_customer(update(bad, &["email"]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["customer.email"]);

    let mut moved = updated.clone();
    moved.home_branch = "B02".into();
    let status = rm
        .update_customer(update(moved.clone(), &["home_branch"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // An admin may move the customer; afterwards B01 cannot reach it.
    let mut admin = app.customers(&Caller::admin()).await;
    let moved = admin
        .update_customer(update(moved, &["home_branch"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.home_branch, "B02");
    let status = rm
        .update_customer(update(moved.clone(), &["display_name"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // No mask: the populated fields change.
    let unmasked = admin
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: moved.name.clone(),
                relationship_manager: "E2002".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unmasked.relationship_manager, "E2002");
    assert_eq!(unmasked.display_name, moved.display_name);

    // `*` replaces the whole profile: what the request leaves unset is
    // cleared (AIP-134), and a required field left out is refused.
    let replaced = admin
        .update_customer(update(
            pb::Customer {
                name: moved.name.clone(),
                display_name: "Zhang Wei".into(),
                kind: unmasked.kind,
                home_branch: "B02".into(),
                ..Default::default()
            },
            &["*"],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.display_name, "Zhang Wei");
    assert!(replaced.relationship_manager.is_empty() && replaced.tags.is_empty());
    let status = admin
        .update_customer(update(
            pb::Customer {
                name: moved.name.clone(),
                ..Default::default()
            },
            &["*"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = admin
        .update_customer(update(
            pb::Customer {
                name: "customers/nobody".into(),
                display_name: "x".into(),
                ..Default::default()
            },
            &["display_name"],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn list_filters_in_sql_within_the_callers_branch() {
    let app = TestApp::spawn().await;
    let mut admin = app.customers(&Caller::admin()).await;
    for (name, branch, kind, tags) in [
        ("A", "B01", Kind::Individual, vec!["wealth"]),
        ("B", "B01", Kind::Corporate, vec!["payroll"]),
        ("C", "B02", Kind::Individual, vec!["wealth", "payroll"]),
        ("D", "B02", Kind::Corporate, vec![]),
    ] {
        let mut customer = person(name, branch);
        customer.kind = kind as i32;
        customer.tags = tags.into_iter().map(String::from).collect();
        admin.create_customer(create(customer)).await.unwrap();
    }
    sqlx::query("UPDATE customers SET tier = 'VIP' WHERE display_name IN ('A', 'C')")
        .execute(&app.db)
        .await
        .unwrap();
    let list = |filter: &str| pb::ListCustomersRequest {
        filter: filter.into(),
        ..Default::default()
    };
    let names = |response: pb::ListCustomersResponse| {
        let mut names: Vec<String> = response
            .customers
            .into_iter()
            .map(|c| c.display_name)
            .collect();
        names.sort();
        names
    };

    let all = admin.list_customers(list("")).await.unwrap().into_inner();
    assert_eq!(names(all), ["A", "B", "C", "D"]);
    let cases: [(&str, &[&str]); 6] = [
        (r#"home_branch = "B02""#, &["C", "D"]),
        ("kind = CORPORATE", &["B", "D"]),
        ("tier = VIP", &["A", "C"]),
        (r#"tags:"wealth" AND tags:"payroll""#, &["C"]),
        (r#"tier = VIP AND home_branch = "B01""#, &["A"]),
        (r#"home_branch = "B01' OR '1'='1""#, &[]),
    ];
    for (filter, expected) in cases {
        let response = admin
            .list_customers(list(filter))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(names(response), expected, "{filter}");
    }

    let mut rm = app.customers(&Caller::rm("B01")).await;
    assert_eq!(
        names(rm.list_customers(list("")).await.unwrap().into_inner()),
        ["A", "B"]
    );
    let other = rm
        .list_customers(list(r#"home_branch = "B02""#))
        .await
        .unwrap()
        .into_inner();
    assert!(other.customers.is_empty());

    for filter in [
        "national_id = \"1\"",
        "tier > VIP",
        "tier = VIP OR kind = CORPORATE",
    ] {
        let status = admin.list_customers(list(filter)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{filter}");
        assert_eq!(violated_fields(&status), ["filter"]);
    }
    let status = admin
        .list_customers(pb::ListCustomersRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn search_finds_chinese_and_latin_names_ranked_and_scoped() {
    let app = TestApp::spawn().await;
    let mut admin = app.customers(&Caller::admin()).await;
    for (name, branch, cif) in [
        ("张伟明", "B01", "C-1"),
        ("张伟", "B01", "C-2"),
        ("李伟", "B01", "C-3"),
        ("Zhang Wei", "B01", "C-4"),
        ("Wei Zhang Trading Ltd", "B01", "C-5"),
        ("张伟", "B02", "C-6"),
    ] {
        let mut customer = person(name, branch);
        customer.external_ids = vec![pb::ExternalId {
            system: "CIF".into(),
            value: cif.into(),
        }];
        admin.create_customer(create(customer)).await.unwrap();
    }
    let search = |query: &str| pb::SearchCustomersRequest {
        query: query.into(),
        ..Default::default()
    };
    let names = |response: pb::SearchCustomersResponse| -> Vec<(String, String)> {
        response
            .customers
            .into_iter()
            .map(|c| (c.display_name, c.home_branch))
            .collect()
    };

    let mut rm = app.customers(&Caller::rm("B01")).await;
    let found = names(
        rm.search_customers(search("张伟"))
            .await
            .unwrap()
            .into_inner(),
    );
    // The exact name ranks first; 李伟 does not match; B02's 张伟 is not visible.
    assert_eq!(found[0], ("张伟".to_string(), "B01".to_string()));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.contains(&("张伟明".to_string(), "B01".to_string())));

    let found = names(
        rm.search_customers(search("zhang wei"))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(found[0].0, "Zhang Wei");
    assert_eq!(found.len(), 2);
    let found = names(
        rm.search_customers(search("zha"))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(found.len(), 2, "prefix match: {found:?}");
    let found = names(
        rm.search_customers(search("C-3"))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(found, [("李伟".to_string(), "B01".to_string())]);

    let everyone = names(
        admin
            .search_customers(search("张伟"))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(everyone.len(), 3);

    // Pages of one walk the same ranking.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .search_customers(pb::SearchCustomersRequest {
                query: "张伟".into(),
                page_size: 1,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.customers.into_iter().map(|c| c.name));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 3);

    for bad in ["", "  !!! ", &"字".repeat(201)] {
        let status = rm.search_customers(search(bad)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["query"]);
    }
}

#[tokio::test]
async fn delete_erases_the_customer_and_leaves_a_tombstone() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let mut customer = person("张伟", "B01");
    customer.external_ids = vec![pb::ExternalId {
        system: "CIF".into(),
        value: "E-1".into(),
    }];
    let created = rm
        .create_customer(create(customer))
        .await
        .unwrap()
        .into_inner();
    let other = rm
        .create_customer(create(person("李娜", "B01")))
        .await
        .unwrap()
        .into_inner();
    rm.link_customers(pb::LinkCustomersRequest {
        name: created.name.clone(),
        linked_customer: other.name.clone(),
        relationship: Relationship::Spouse as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let current = rm
        .get_customer(get(&created.name))
        .await
        .unwrap()
        .into_inner();

    let status = rm
        .delete_customer(pb::DeleteCustomerRequest {
            name: created.name.clone(),
            etag: created.etag.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "the link changed the etag");

    rm.delete_customer(pb::DeleteCustomerRequest {
        name: created.name.clone(),
        etag: current.etag.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    let status = rm.get_customer(get(&created.name)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = app
        .customers(&Caller::service())
        .await
        .lookup_customer(pb::LookupCustomerRequest {
            system: "CIF".into(),
            value: "E-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let listed = rm
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers.len(), 1);
    let other = rm
        .get_customer(get(&other.name))
        .await
        .unwrap()
        .into_inner();
    assert!(other.links.is_empty());
    let status = rm
        .delete_customer(pb::DeleteCustomerRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Nothing personal is left in the tombstone.
    let id = created.name.trim_start_matches("customers/");
    let row: (
        String,
        String,
        String,
        String,
        Option<chrono::NaiveDate>,
        String,
        i64,
    ) = sqlx::query_as(
        "SELECT display_name, national_id, phone, email, birth_date, address,
                    (SELECT count(*) FROM customer_external_ids WHERE customer_id = $1)
             FROM customers WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            None,
            String::new(),
            0
        )
    );
}

#[tokio::test]
async fn consents_are_recorded_per_purpose() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let created = rm
        .create_customer(create(person("张伟", "B01")))
        .await
        .unwrap()
        .into_inner();
    let consent = |purpose: ConsentPurpose, granted: bool| pb::UpdateConsentRequest {
        name: created.name.clone(),
        purpose: purpose as i32,
        granted: Some(granted),
        ..Default::default()
    };
    rm.update_consent(consent(ConsentPurpose::Marketing, true))
        .await
        .unwrap();
    let customer = rm
        .update_consent(consent(ConsentPurpose::Analytics, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customer.consents.len(), 2);
    let customer = rm
        .update_consent(consent(ConsentPurpose::Marketing, false))
        .await
        .unwrap()
        .into_inner();
    let marketing = customer
        .consents
        .iter()
        .find(|c| c.purpose == ConsentPurpose::Marketing as i32)
        .unwrap();
    assert!(!marketing.granted);

    let status = rm
        .update_consent(consent(ConsentPurpose::Unspecified, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["purpose"]);
    let mut stale = consent(ConsentPurpose::CrossSell, true);
    stale.etag = created.etag.clone();
    assert_eq!(
        rm.update_consent(stale).await.unwrap_err().code(),
        Code::Aborted
    );
    let status = app
        .customers(&Caller::rm("B02"))
        .await
        .update_consent(consent(ConsentPurpose::CrossSell, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn links_read_from_both_sides_without_self_links_or_duplicates() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let new = |name: &'static str| {
        let mut rm = rm.clone();
        async move {
            rm.create_customer(create(person(name, "B01")))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let company = new("Acme Ltd").await;
    let director = new("张伟").await;
    let spouse = new("李娜").await;
    let link = |name: &str, linked: &str, relationship: Relationship| pb::LinkCustomersRequest {
        name: name.into(),
        linked_customer: linked.into(),
        relationship: relationship as i32,
        ..Default::default()
    };

    let company_view = rm
        .link_customers(link(&company.name, &director.name, Relationship::Director))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(company_view.links.len(), 1);
    assert_eq!(company_view.links[0].customer, director.name);
    assert!(!company_view.links[0].inverse);
    let director_view = rm
        .get_customer(get(&director.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(director_view.links.len(), 1);
    assert_eq!(director_view.links[0].customer, company.name);
    assert_eq!(
        director_view.links[0].relationship,
        Relationship::Director as i32
    );
    assert!(director_view.links[0].inverse);

    rm.link_customers(link(&director.name, &spouse.name, Relationship::Spouse))
        .await
        .unwrap();
    let spouse_view = rm
        .get_customer(get(&spouse.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spouse_view.links[0].customer, director.name);
    assert!(!spouse_view.links[0].inverse);

    for duplicate in [
        link(&director.name, &spouse.name, Relationship::Spouse),
        link(&spouse.name, &director.name, Relationship::Spouse),
        link(&company.name, &director.name, Relationship::Director),
    ] {
        let status = rm.link_customers(duplicate).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(reason(&status), "LINK_ALREADY_EXISTS");
    }
    let status = rm
        .link_customers(link(&spouse.name, &spouse.name, Relationship::Household))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["linked_customer"]);
    let status = rm
        .link_customers(link(&spouse.name, &company.name, Relationship::Unspecified))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["relationship"]);

    let elsewhere = app
        .customers(&Caller::admin())
        .await
        .create_customer(create(person("赵六", "B02")))
        .await
        .unwrap()
        .into_inner();
    let status = rm
        .link_customers(link(&spouse.name, &elsewhere.name, Relationship::Household))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = rm
        .link_customers(link(
            &spouse.name,
            "customers/nobody",
            Relationship::Household,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// AIP-157: a read returns what its caller asks for. Get defaults to FULL,
/// lists to BASIC (no national id, birth date, address, consents or links);
/// a read mask returns exactly the fields it names.
#[tokio::test]
async fn reads_take_a_view_and_a_read_mask() {
    let app = TestApp::spawn().await;
    let mut client = app.customers(&Caller::rm("B01")).await;
    let created = client
        .create_customer(create(person("张伟", "B01")))
        .await
        .unwrap()
        .into_inner();

    let full = client
        .get_customer(get(&created.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(full.national_id, "110101199003071234");
    assert_eq!(full.address, "1 Bund Road, Shanghai");

    let listed = client
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let basic = &listed.customers[0];
    assert_eq!(basic.name, created.name);
    assert_eq!(basic.phone, "+86 138 0013 8000");
    assert_eq!(
        (
            basic.national_id.as_str(),
            basic.birth_date.as_str(),
            basic.address.as_str()
        ),
        ("", "", "")
    );
    assert_eq!(basic.date_of_birth, None);
    let listed_full = client
        .list_customers(pb::ListCustomersRequest {
            view: pb::View::Full as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed_full.customers[0], full);

    let masked = client
        .get_customer(pb::GetCustomerRequest {
            name: created.name.clone(),
            read_mask: Some(FieldMask {
                paths: vec!["name".into(), "display_name".into(), "etag".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        masked,
        pb::Customer {
            name: created.name.clone(),
            display_name: "张伟".into(),
            etag: full.etag.clone(),
            ..Default::default()
        }
    );

    let status = client
        .get_customer(pb::GetCustomerRequest {
            name: created.name.clone(),
            view: 7,
            read_mask: Some(FieldMask {
                paths: vec!["name".into(), "salary".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["view", "read_mask.paths[1]"]);
}

/// A cache follows changes: `update_time > T` with `order_by: "update_time"`
/// lists every customer changed since T, least recently changed first, page
/// by page; one changed again while the pages are read comes again at the end.
#[tokio::test]
async fn list_customers_follows_changes_by_update_time() {
    let app = TestApp::spawn().await;
    let mut rm = app.customers(&Caller::rm("B01")).await;
    let mut names = Vec::new();
    for name in ["甲", "乙", "丙"] {
        let c = rm
            .create_customer(create(person(name, "B01")))
            .await
            .unwrap()
            .into_inner();
        names.push(c);
    }
    // Changed after creation, in this order: 丙 then 甲; 乙 untouched.
    let since = names[2].update_time.unwrap();
    let since = customer_knowledge::api::from_timestamp(&since).unwrap();
    let touch = |c: &pb::Customer, tag: &str| pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            name: c.name.clone(),
            tags: vec![tag.into()],
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["tags".into()],
        }),
        ..Default::default()
    };
    rm.update_customer(touch(&names[2], "changed-1"))
        .await
        .unwrap();
    rm.update_customer(touch(&names[0], "changed-2"))
        .await
        .unwrap();

    let filter = format!("update_time > \"{}\"", since.to_rfc3339());
    let page = |token: String| pb::ListCustomersRequest {
        filter: filter.clone(),
        order_by: "update_time".into(),
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    let first = rm
        .list_customers(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.customers[0].name, names[2].name);
    // 丙 changes again between pages: it comes again after 甲.
    rm.update_customer(touch(&names[2], "changed-3"))
        .await
        .unwrap();
    let second = rm
        .list_customers(page(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.customers[0].name, names[0].name);
    let third = rm
        .list_customers(page(second.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.customers[0].name, names[2].name);
    assert_eq!(third.customers[0].tags, ["changed-3"]);
    assert!(third.next_page_token.is_empty(), "nothing changed after it");

    // Bad orders and times are the caller's mistake, each named.
    let status = rm
        .list_customers(pb::ListCustomersRequest {
            filter: "update_time > yesterday".into(),
            order_by: "salary desc".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["filter", "order_by"]);
}

/// Customers whose external ids, consents or links as stored on the row
/// (what every read returns) differ from the three tables they come from.
async fn stale_documents(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT ck_customer_documents_stale()")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_ids_consents_and_links_a_read_returns_follow_every_change() {
    let app = TestApp::spawn().await;
    let mut admin = app.customers(&Caller::admin()).await;
    let mut service = app.customers(&Caller::service()).await;
    let id = |system: &str, value: &str| pb::ExternalId {
        system: system.into(),
        value: value.into(),
    };
    let new = |name: &'static str, ids: Vec<pb::ExternalId>| {
        let mut service = service.clone();
        async move {
            let mut customer = person(name, "B01");
            customer.external_ids = ids;
            service
                .create_customer(create(customer))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let survivor = new("Survivor", vec![id("CIF", "C-1")]).await;
    let duplicate = new("Duplicate", vec![id("CIF", "C-2"), id("MOBILE", "m-2")]).await;
    let spouse = new("Spouse", vec![]).await;
    let director = new("Director", vec![]).await;
    assert_eq!(stale_documents(&app).await, Vec::<String>::new());
    let reader = admin.clone();
    let read = |name: String| {
        let mut admin = reader.clone();
        async move { admin.get_customer(get(&name)).await.unwrap().into_inner() }
    };

    // External ids replaced through UpdateCustomer.
    let mut change = survivor.clone();
    change.external_ids = vec![id("CIF", "C-1"), id("CARD", "6222-1")];
    service
        .update_customer(pb::UpdateCustomerRequest {
            customer: Some(change),
            update_mask: mask(&["external_ids"]),
            ..Default::default()
        })
        .await
        .unwrap();
    let values = |c: &pb::Customer| -> Vec<String> {
        c.external_ids.iter().map(|e| e.value.clone()).collect()
    };
    assert_eq!(
        values(&read(survivor.name.clone()).await),
        ["6222-1", "C-1"]
    );

    // Consents granted and withdrawn, on both customers.
    for (name, purpose) in [
        (&survivor.name, ConsentPurpose::Marketing),
        (&duplicate.name, ConsentPurpose::KnowledgeSharing),
        (&duplicate.name, ConsentPurpose::Marketing),
    ] {
        admin
            .grant_consent(pb::GrantConsentRequest {
                name: name.clone(),
                purpose: purpose as i32,
                channel: "BRANCH_FORM".into(),
                policy_version: "2026.1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    admin
        .withdraw_consent(pb::WithdrawConsentRequest {
            name: duplicate.name.clone(),
            purpose: ConsentPurpose::Marketing as i32,
            channel: "PHONE_RECORDED".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read(duplicate.name.clone()).await.consents.len(), 2);
    assert_eq!(stale_documents(&app).await, Vec::<String>::new());

    // Links made and removed: both ends read them.
    let link = |name: &str, linked: &str, relationship: Relationship| pb::LinkCustomersRequest {
        name: name.into(),
        linked_customer: linked.into(),
        relationship: relationship as i32,
        ..Default::default()
    };
    admin
        .link_customers(link(&duplicate.name, &spouse.name, Relationship::Spouse))
        .await
        .unwrap();
    admin
        .link_customers(link(
            &duplicate.name,
            &director.name,
            Relationship::Director,
        ))
        .await
        .unwrap();
    admin
        .link_customers(link(
            &survivor.name,
            &director.name,
            Relationship::Guarantor,
        ))
        .await
        .unwrap();
    admin
        .unlink_customers(pb::UnlinkCustomersRequest {
            name: survivor.name.clone(),
            linked_customer: director.name.clone(),
            relationship: Relationship::Guarantor as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read(spouse.name.clone()).await.links.len(), 1);
    assert_eq!(read(director.name.clone()).await.links.len(), 1);
    assert_eq!(stale_documents(&app).await, Vec::<String>::new());

    // A merge moves the duplicate's ids, consents and links to the survivor,
    // and the far ends of its links now read the survivor.
    let merged = admin
        .merge_customers(pb::MergeCustomersRequest {
            name: survivor.name.clone(),
            duplicate: duplicate.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(values(&merged), ["6222-1", "C-1", "C-2", "m-2"]);
    assert_eq!(merged.links.len(), 2);
    assert_eq!(
        read(spouse.name.clone()).await.links[0].customer,
        survivor.name
    );
    assert_eq!(stale_documents(&app).await, Vec::<String>::new());

    // Erasure empties the erased customer's documents and drops it from the
    // documents of the customers it was linked to.
    admin
        .delete_customer(pb::DeleteCustomerRequest {
            name: survivor.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(read(spouse.name.clone()).await.links.is_empty());
    assert!(read(director.name.clone()).await.links.is_empty());
    let erased: (serde_json::Value, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT external_ids_doc, consents_doc, links_doc FROM customers WHERE id = $1",
    )
    .bind(survivor.name.trim_start_matches("customers/"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    let empty = serde_json::json!([]);
    assert_eq!(erased, (empty.clone(), empty.clone(), empty));
    assert_eq!(stale_documents(&app).await, Vec::<String>::new());
}
