//! `CustomerService`: customer profiles under the access rules of DESIGN §3.

use std::collections::BTreeMap;

use prost::Message;
use tonic::{Request, Response, Status};

use super::{
    idempotency_key,
    page_token::{PageTokens, page_size},
    principal, respond, timestamp,
};
use crate::{
    domain::{
        customer::{
            self as rules, ConsentChange, ConsentPurpose, Customer, CustomerId, CustomerKind, Pii,
            Profile, ProfileField, ProfilePatch, Relationship, Tier,
        },
        filter::CustomerFilter,
        mask,
        principal::{BranchScope, Principal},
        search,
        systems::{acting_for, check_acting_for},
    },
    error::{Error, Violations},
    pb::v1::{self as pb, customer_service_server::CustomerService},
    store::{
        Db,
        customers::{self, Found, Lock},
    },
};

pub struct CustomerApi {
    db: Db,
    page_tokens: PageTokens,
}

impl CustomerApi {
    pub fn new(db: Db, page_tokens: PageTokens) -> Self {
        CustomerApi { db, page_tokens }
    }
}

/// A customer the caller asked for, or why they cannot have it: outside the
/// caller's scope is PERMISSION_DENIED whether or not it exists (AIP-211).
pub(crate) fn resolve(
    found: Found,
    scope: &BranchScope,
    id: &CustomerId,
) -> Result<Customer, Error> {
    match found {
        Found::Customer(customer) => Ok(*customer),
        Found::Erased => Err(Error::not_found(id.name())),
        Found::Nothing => match scope {
            BranchScope::All => Err(Error::not_found(id.name())),
            BranchScope::Branch(_) => Err(Error::denied(format!(
                "reach {}: it does not exist or is outside your reach",
                id.name()
            ))),
        },
    }
}

/// The customer a write hangs off (an interaction, a follow-up, a complaint
/// change), share-locked until the transaction ends so that an erasure
/// cannot commit in between; NOT_FOUND when one committed first.
pub(crate) async fn lock_reachable_customer(
    tx: &mut sqlx::PgConnection,
    id: &CustomerId,
    scope: &BranchScope,
) -> Result<Customer, Error> {
    let found = customers::get(tx, id, scope.branch(), Lock::Share).await?;
    resolve(found, scope, id)
}

pub(crate) fn parse_name(field: &str, name: &str) -> Result<CustomerId, Error> {
    CustomerId::from_name(name).map_err(|e| Error::invalid(field, e))
}

/// The customer as the caller may see it now: what an idempotent replay
/// returns (AIP-155), after the same access check as the original write.
async fn current_customer(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: &BranchScope,
    caller: &Principal,
) -> Result<pb::Customer, Error> {
    let id = CustomerId::from_name(name)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name: {e}")))?;
    let found = customers::get(tx, &id, scope.branch(), Lock::None).await?;
    Ok(customer_to_proto(&resolve(found, scope, &id)?, caller))
}

/// A consent change as a request states it, before validation.
struct ConsentStatement<'a> {
    name: &'a str,
    purpose: i32,
    granted: bool,
    channel: &'a str,
    evidence_ref: &'a str,
    policy_version: &'a str,
    /// Grants name the policy the customer agreed to.
    policy_required: bool,
}

/// Validates a consent change, adding to `violations` found earlier.
fn read_consent(
    stated: &ConsentStatement,
    mut violations: Violations,
) -> Result<(CustomerId, ConsentChange), Error> {
    let id = CustomerId::from_name(stated.name)
        .inspect_err(|e| violations.add("name", e.clone()))
        .ok();
    let purpose = purpose_from_proto(stated.purpose);
    if purpose.is_none() {
        violations.add(
            "purpose",
            "must be MARKETING, CROSS_SELL, ANALYTICS or KNOWLEDGE_SHARING",
        );
    }
    let channel = rules::org_code(stated.channel, true)
        .inspect_err(|e| violations.add("channel", e.clone()))
        .unwrap_or_default();
    let evidence_ref = rules::bounded_text(stated.evidence_ref.trim(), rules::MAX_EVIDENCE_REF)
        .inspect_err(|e| violations.add("evidence_ref", e.clone()))
        .unwrap_or_default();
    let policy_version =
        rules::bounded_text(stated.policy_version.trim(), rules::MAX_POLICY_VERSION)
            .inspect_err(|e| violations.add("policy_version", e.clone()))
            .unwrap_or_default();
    if stated.policy_required && policy_version.is_empty() {
        violations.add(
            "policy_version",
            "is required: the version of the policy the customer agreed to",
        );
    }
    let (id, purpose) = violations.into_result((id, purpose))?;
    let (Some(id), Some(purpose)) = (id, purpose) else {
        return Err(Error::unreported_missing_part());
    };
    Ok((
        id,
        ConsentChange {
            purpose,
            granted: stated.granted,
            channel,
            evidence_ref,
            policy_version,
        },
    ))
}

impl CustomerApi {
    /// Records a consent change for a customer the caller may write.
    async fn record_consent(
        &self,
        caller: &Principal,
        scope: &BranchScope,
        id: &CustomerId,
        change: &ConsentChange,
        etag: &str,
        key: Option<crate::store::idempotency::IdempotencyKey>,
    ) -> Result<pb::Customer, Error> {
        self.db
            .write(
                key.as_ref(),
                customer_names,
                async |tx, names| current_customer(tx, &names[0], scope, caller).await,
                async |tx| {
                    let found = customers::get(tx, id, scope.branch(), Lock::Update).await?;
                    let current = resolve(found, scope, id)?;
                    check_etag(etag, &current)?;
                    let updated = customers::set_consent(tx, id, change, &caller.subject).await?;
                    Ok(customer_to_proto(&updated, caller))
                },
            )
            .await
    }
}

/// What a customer sees of their own profile through a system acting for
/// them: no staff tags, value tier or scores, no relationship manager and no
/// other customers (links).
fn self_service_view(customer: pb::Customer) -> pb::Customer {
    pb::Customer {
        relationship_manager: String::new(),
        tags: Vec::new(),
        tier: 0,
        rfm: None,
        links: Vec::new(),
        ..customer
    }
}

/// What an idempotency key keeps of a customer response: its name only.
fn customer_names(customer: &pb::Customer) -> Vec<String> {
    vec![customer.name.clone()]
}

pub(crate) fn check_etag(etag: &str, customer: &Customer) -> Result<(), Error> {
    if !etag.is_empty() && etag != customer.etag() {
        return Err(Error::EtagMismatch {
            resource: customer.id.name(),
        });
    }
    Ok(())
}

pub(crate) fn customer_to_proto(customer: &Customer, caller: &Principal) -> pb::Customer {
    let profile = &customer.profile;
    let pii = &profile.pii;
    let show = caller.sees_pii_of(&profile.home_branch);
    let text = |value: &str| {
        if show {
            value.to_string()
        } else {
            mask::mask_text(value)
        }
    };
    pb::Customer {
        name: customer.id.name(),
        display_name: profile.display_name.clone(),
        kind: match profile.kind {
            CustomerKind::Individual => pb::customer::Kind::Individual,
            CustomerKind::Corporate => pb::customer::Kind::Corporate,
        } as i32,
        external_ids: profile
            .external_ids
            .iter()
            .map(|e| pb::ExternalId {
                system: e.system.clone(),
                value: e.value.clone(),
            })
            .collect(),
        home_branch: profile.home_branch.clone(),
        relationship_manager: profile.relationship_manager.clone(),
        national_id: text(&pii.national_id),
        phone: text(&pii.phone),
        email: text(&pii.email),
        birth_date: if show {
            pii.birth_date
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        } else {
            mask::mask_birth_date(pii.birth_date)
        },
        address: if show {
            pii.address.clone()
        } else {
            mask::mask_address(&pii.address)
        },
        tags: profile.tags.clone(),
        preferences: profile.preferences.clone(),
        consents: customer
            .consents
            .iter()
            .map(|c| pb::Consent {
                purpose: purpose_to_proto(c.purpose) as i32,
                granted: c.granted,
                update_time: Some(timestamp(c.update_time)),
            })
            .collect(),
        tier: match customer.tier {
            None => pb::customer::Tier::Unspecified,
            Some(Tier::Vip) => pb::customer::Tier::Vip,
            Some(Tier::Major) => pb::customer::Tier::Major,
            Some(Tier::Ordinary) => pb::customer::Tier::Ordinary,
            Some(Tier::Small) => pb::customer::Tier::Small,
        } as i32,
        rfm: customer.rfm.map(|r| pb::RfmScore {
            recency_score: r.recency.into(),
            frequency_score: r.frequency.into(),
            monetary_score: r.monetary.into(),
        }),
        links: customer
            .links
            .iter()
            .map(|l| pb::CustomerLink {
                customer: l.customer.name(),
                relationship: relationship_to_proto(l.relationship) as i32,
                inverse: l.inverse,
                create_time: Some(timestamp(l.create_time)),
            })
            .collect(),
        etag: customer.etag(),
        create_time: Some(timestamp(customer.create_time)),
        update_time: Some(timestamp(customer.update_time)),
    }
}

fn purpose_to_proto(purpose: ConsentPurpose) -> pb::ConsentPurpose {
    match purpose {
        ConsentPurpose::Marketing => pb::ConsentPurpose::Marketing,
        ConsentPurpose::CrossSell => pb::ConsentPurpose::CrossSell,
        ConsentPurpose::Analytics => pb::ConsentPurpose::Analytics,
        ConsentPurpose::KnowledgeSharing => pb::ConsentPurpose::KnowledgeSharing,
    }
}

fn purpose_from_proto(value: i32) -> Option<ConsentPurpose> {
    match pb::ConsentPurpose::try_from(value).ok()? {
        pb::ConsentPurpose::Unspecified => None,
        pb::ConsentPurpose::Marketing => Some(ConsentPurpose::Marketing),
        pb::ConsentPurpose::CrossSell => Some(ConsentPurpose::CrossSell),
        pb::ConsentPurpose::Analytics => Some(ConsentPurpose::Analytics),
        pb::ConsentPurpose::KnowledgeSharing => Some(ConsentPurpose::KnowledgeSharing),
    }
}

fn relationship_to_proto(relationship: Relationship) -> pb::customer_link::Relationship {
    use pb::customer_link::Relationship as P;
    match relationship {
        Relationship::Household => P::Household,
        Relationship::Spouse => P::Spouse,
        Relationship::Guarantor => P::Guarantor,
        Relationship::Director => P::Director,
    }
}

fn relationship_from_proto(value: i32) -> Option<Relationship> {
    use pb::customer_link::Relationship as P;
    match P::try_from(value).ok()? {
        P::Unspecified => None,
        P::Household => Some(Relationship::Household),
        P::Spouse => Some(Relationship::Spouse),
        P::Guarantor => Some(Relationship::Guarantor),
        P::Director => Some(Relationship::Director),
    }
}

/// Output-only fields of `Customer`: never accepted in an update mask.
const OUTPUT_ONLY: &[&str] = &[
    "name",
    "consents",
    "tier",
    "rfm",
    "links",
    "etag",
    "create_time",
    "update_time",
];

/// Reads the profile fields in `fields` from a proto customer, validating each
/// and collecting every violation under `prefix`. Fields not listed keep
/// their defaults and are not looked at.
fn read_profile(
    customer: &pb::Customer,
    fields: &[ProfileField],
    prefix: &str,
    violations: &mut Violations,
) -> Profile {
    // Destructured so that a new proto field cannot be forgotten here.
    let pb::Customer {
        name: _,
        display_name,
        kind,
        external_ids,
        home_branch,
        relationship_manager,
        national_id,
        phone,
        email,
        birth_date,
        address,
        tags,
        preferences,
        consents: _,
        tier: _,
        rfm: _,
        links: _,
        etag: _,
        create_time: _,
        update_time: _,
    } = customer;
    let mut profile = Profile {
        display_name: String::new(),
        kind: CustomerKind::Individual,
        external_ids: Vec::new(),
        home_branch: String::new(),
        relationship_manager: String::new(),
        pii: Pii::default(),
        tags: Vec::new(),
        preferences: BTreeMap::new(),
    };
    let mut check = |field: &str, result: Result<(), String>| {
        if let Err(description) = result {
            violations.add(format!("{prefix}.{field}"), description);
        }
    };
    for field in fields {
        let path = field.path();
        match field {
            ProfileField::DisplayName => check(
                path,
                rules::display_name(display_name).map(|v| profile.display_name = v),
            ),
            ProfileField::Kind => check(
                path,
                match pb::customer::Kind::try_from(*kind) {
                    Ok(pb::customer::Kind::Individual) => {
                        profile.kind = CustomerKind::Individual;
                        Ok(())
                    }
                    Ok(pb::customer::Kind::Corporate) => {
                        profile.kind = CustomerKind::Corporate;
                        Ok(())
                    }
                    _ => Err("must be INDIVIDUAL or CORPORATE".into()),
                },
            ),
            ProfileField::ExternalIds => {
                if external_ids.len() > rules::MAX_EXTERNAL_IDS {
                    check(
                        path,
                        Err(format!("must hold at most {}", rules::MAX_EXTERNAL_IDS)),
                    );
                    continue;
                }
                for (i, external) in external_ids.iter().enumerate() {
                    match rules::external_id(&external.system, &external.value) {
                        Ok(id) if profile.external_ids.contains(&id) => {
                            check(&format!("{path}[{i}]"), Err("is listed twice".into()))
                        }
                        Ok(id) => profile.external_ids.push(id),
                        Err((part, description)) => {
                            check(&format!("{path}[{i}].{part}"), Err(description))
                        }
                    }
                }
            }
            ProfileField::HomeBranch => check(
                path,
                rules::org_code(home_branch, true).map(|v| profile.home_branch = v),
            ),
            ProfileField::RelationshipManager => check(
                path,
                rules::org_code(relationship_manager, false)
                    .map(|v| profile.relationship_manager = v),
            ),
            ProfileField::NationalId => check(
                path,
                rules::national_id(national_id).map(|v| profile.pii.national_id = v),
            ),
            ProfileField::Phone => check(path, rules::phone(phone).map(|v| profile.pii.phone = v)),
            ProfileField::Email => check(path, rules::email(email).map(|v| profile.pii.email = v)),
            ProfileField::BirthDate => check(
                path,
                rules::birth_date(birth_date).map(|v| profile.pii.birth_date = v),
            ),
            ProfileField::Address => check(
                path,
                rules::bounded_text(address, rules::MAX_ADDRESS).map(|v| profile.pii.address = v),
            ),
            ProfileField::Tags => {
                if tags.len() > rules::MAX_TAGS {
                    check(path, Err(format!("must hold at most {}", rules::MAX_TAGS)));
                    continue;
                }
                for (i, tag) in tags.iter().enumerate() {
                    match rules::tag(tag) {
                        Ok(tag) if !profile.tags.contains(&tag) => profile.tags.push(tag),
                        Ok(_) => {}
                        Err(description) => check(&format!("{path}[{i}]"), Err(description)),
                    }
                }
            }
            ProfileField::Preferences => {
                if preferences.len() > rules::MAX_PREFERENCES {
                    check(
                        path,
                        Err(format!("must hold at most {}", rules::MAX_PREFERENCES)),
                    );
                    continue;
                }
                for (key, value) in preferences {
                    let result = rules::preference_key(key).and_then(|key| {
                        rules::bounded_text(value, rules::MAX_PREFERENCE_VALUE)
                            .map(|value| (key, value))
                    });
                    match result {
                        Ok((key, value)) => {
                            profile.preferences.insert(key, value);
                        }
                        Err(description) => check(&format!("{path}[{key:?}]"), Err(description)),
                    }
                }
            }
        }
    }
    profile
}

/// The profile fields set (non-default) in a proto customer: what an update
/// without a mask changes.
fn populated_fields(c: &pb::Customer) -> Vec<ProfileField> {
    ProfileField::ALL
        .iter()
        .copied()
        .filter(|field| match field {
            ProfileField::DisplayName => !c.display_name.is_empty(),
            ProfileField::Kind => c.kind != 0,
            ProfileField::ExternalIds => !c.external_ids.is_empty(),
            ProfileField::HomeBranch => !c.home_branch.is_empty(),
            ProfileField::RelationshipManager => !c.relationship_manager.is_empty(),
            ProfileField::NationalId => !c.national_id.is_empty(),
            ProfileField::Phone => !c.phone.is_empty(),
            ProfileField::Email => !c.email.is_empty(),
            ProfileField::BirthDate => !c.birth_date.is_empty(),
            ProfileField::Address => !c.address.is_empty(),
            ProfileField::Tags => !c.tags.is_empty(),
            ProfileField::Preferences => !c.preferences.is_empty(),
        })
        .collect()
}

fn mask_fields(
    mask: Option<&prost_types::FieldMask>,
    customer: &pb::Customer,
    violations: &mut Violations,
) -> Vec<ProfileField> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return populated_fields(customer);
    }
    let mut fields = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        if path == "*" {
            return ProfileField::ALL.to_vec();
        }
        match ProfileField::from_path(path) {
            Some(field) if !fields.contains(&field) => fields.push(field),
            Some(_) => {}
            None if OUTPUT_ONLY.contains(&path.as_str()) => violations.add(
                format!("update_mask.paths[{i}]"),
                format!("{path} is output only"),
            ),
            None => violations.add(
                format!("update_mask.paths[{i}]"),
                format!("{path} is not a field of Customer"),
            ),
        }
    }
    fields
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    #[tracing::instrument(skip_all, name = "CreateCustomer")]
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let audit = crate::audit::note(&request);
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let profile = match &req.customer {
                Some(customer) => {
                    read_profile(customer, ProfileField::ALL, "customer", &mut violations)
                }
                None => {
                    violations.add("customer", "is required");
                    read_profile(&pb::Customer::default(), &[], "customer", &mut violations)
                }
            };
            let id = if req.customer_id.is_empty() {
                CustomerId::generate()
            } else {
                CustomerId::parse(&req.customer_id).unwrap_or_else(|e| {
                    violations.add("customer_id", e);
                    CustomerId::generate()
                })
            };
            let key = idempotency_key(
                &caller,
                "CreateCustomer",
                &req.request_id,
                &pb::CreateCustomerRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )
            .unwrap_or_else(|e| {
                if let Error::InvalidArgument(v) = e {
                    v.into_iter()
                        .for_each(|v| violations.add(v.field, v.description));
                }
                None
            });
            let profile = violations.into_result(profile)?;
            if !scope.admits(&profile.home_branch) {
                return Err(Error::denied(
                    "create customers for a branch other than their own",
                ));
            }
            self.db
                .write(
                    key.as_ref(),
                    customer_names,
                    async |tx, names| current_customer(tx, &names[0], &scope, &caller).await,
                    async |tx| {
                        let customer = customers::insert(tx, &id, &profile, &scope).await?;
                        Ok(customer_to_proto(&customer, &caller))
                    },
                )
                .await
                .inspect(|created| audit.customer(&created.name))
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GetCustomer")]
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let id = parse_name("name", &request.get_ref().name)?;
            check_acting_for(&caller, id.as_str())?;
            let found = self.db.get_customer(&id, scope.branch()).await?;
            let customer = customer_to_proto(&resolve(found, &scope, &id)?, &caller);
            Ok(if acting_for(&caller).is_some() {
                self_service_view(customer)
            } else {
                customer
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "LookupCustomer")]
    async fn lookup_customer(
        &self,
        request: Request<pb::LookupCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let external = rules::external_id(&req.system, &req.value)
                .map_err(|(part, description)| Error::invalid(part, description))?;
            match self
                .db
                .lookup_customer(&external.system, &external.value, scope.branch())
                .await?
            {
                Found::Customer(customer) => {
                    crate::audit::note_customer(&request, customer.id.as_str());
                    Ok(customer_to_proto(&customer, &caller))
                }
                _ if scope == BranchScope::All => Err(Error::not_found(format!(
                    "a customer with this {} id",
                    external.system
                ))),
                _ => Err(Error::denied(
                    "look up this customer: it does not exist or is outside your reach",
                )),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "UpdateCustomer")]
    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            crate::audit::note_customers(
                &request,
                request.get_ref().customer.iter().map(|c| c.name.as_str()),
            );
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let customer = req
                .customer
                .as_ref()
                .ok_or_else(|| Error::invalid("customer", "is required"))?;
            let id = parse_name("customer.name", &customer.name)?;
            let mut violations = Violations::default();
            let fields = mask_fields(req.update_mask.as_ref(), customer, &mut violations);
            if fields.is_empty() && violations.is_empty() {
                violations.add("update_mask", "names no field to change");
            }
            let values = read_profile(customer, &fields, "customer", &mut violations);
            let key = idempotency_key(
                &caller,
                "UpdateCustomer",
                &req.request_id,
                &pb::UpdateCustomerRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let patch = violations.into_result(ProfilePatch { fields, values })?;
            let etag = customer.etag.clone();
            self.db
                .write(
                    key.as_ref(),
                    customer_names,
                    async |tx, names| current_customer(tx, &names[0], &scope, &caller).await,
                    async |tx| {
                        let found = customers::get(tx, &id, scope.branch(), Lock::Update).await?;
                        let current = resolve(found, &scope, &id)?;
                        check_etag(&etag, &current)?;
                        let mut profile = current.profile.clone();
                        patch.apply(&mut profile);
                        if !scope.admits(&profile.home_branch) {
                            return Err(Error::denied("move a customer to another branch"));
                        }
                        let changed: Vec<&str> = patch.fields.iter().map(|f| f.path()).collect();
                        let updated = customers::update_profile(
                            tx,
                            &id,
                            &profile,
                            &changed,
                            patch.fields.contains(&ProfileField::ExternalIds),
                        )
                        .await?;
                        Ok(customer_to_proto(&updated, &caller))
                    },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListCustomers")]
    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let limit = page_size(req.page_size)?;
            let filter =
                CustomerFilter::parse(&req.filter).map_err(|e| Error::invalid("filter", e))?;
            let context = format!("ListCustomers|{}|{}", caller.subject, req.filter);
            let after = self.page_tokens.decode(&req.page_token, &context)?;
            let mut page = self
                .db
                .list_customers(scope.branch(), &filter, after.as_deref(), limit + 1)
                .await?;
            let next_page_token = self.page_tokens.next_sized_page(
                &mut page,
                limit,
                &context,
                |c| customer_to_proto(c, &caller).encoded_len(),
                |last, _| last.id.as_str().to_string(),
            );
            crate::audit::note_customers(&request, page.iter().map(|c| c.id.as_str()));
            Ok(pb::ListCustomersResponse {
                customers: page.iter().map(|c| customer_to_proto(c, &caller)).collect(),
                next_page_token,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "SearchCustomers")]
    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let limit = page_size(req.page_size)?;
            if req.query.chars().count() > search::MAX_QUERY_CHARS {
                return Err(Error::invalid(
                    "query",
                    format!("must be at most {} characters", search::MAX_QUERY_CHARS),
                ));
            }
            let tsquery = search::tsquery(&req.query).ok_or_else(|| {
                Error::invalid("query", "must contain at least one letter or digit")
            })?;
            let context = format!("SearchCustomers|{}|{}", caller.subject, req.query);
            let offset: i64 = match self.page_tokens.decode(&req.page_token, &context)? {
                None => 0,
                Some(cursor) => cursor.parse().map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this search")
                })?,
            };
            let mut page = self
                .db
                .search_customers(scope.branch(), &tsquery, &req.query, offset, limit + 1)
                .await?;
            let next_page_token = self.page_tokens.next_sized_page(
                &mut page,
                limit,
                &context,
                |c| customer_to_proto(c, &caller).encoded_len(),
                |_, kept| (offset + kept as i64).to_string(),
            );
            crate::audit::note_customers(&request, page.iter().map(|c| c.id.as_str()));
            Ok(pb::SearchCustomersResponse {
                customers: page.iter().map(|c| customer_to_proto(c, &caller)).collect(),
                next_page_token,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "DeleteCustomer")]
    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<()>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let id = parse_name("name", &req.name)?;
            let key = idempotency_key(
                &caller,
                "DeleteCustomer",
                &req.request_id,
                &pb::DeleteCustomerRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            self.db
                .write(
                    key.as_ref(),
                    |_: &()| vec![id.name()],
                    // A replay answers OK only while the caller may still
                    // reach the (now erased) customer.
                    async |tx, _| match customers::get(tx, &id, scope.branch(), Lock::None).await? {
                        Found::Erased => Ok(()),
                        other => resolve(other, &scope, &id).map(|_| ()),
                    },
                    async |tx| {
                        let found = customers::get(tx, &id, scope.branch(), Lock::Update).await?;
                        let current = resolve(found, &scope, &id)?;
                        check_etag(&req.etag, &current)?;
                        customers::erase(tx, &id).await
                    },
                )
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "UpdateConsent")]
    async fn update_consent(
        &self,
        request: Request<pb::UpdateConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            crate::audit::note_customer(&request, &request.get_ref().name);
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            if req.granted.is_none() {
                violations.add(
                    "granted",
                    "is required: true grants, false withdraws (GrantConsent and WithdrawConsent say it without a flag)",
                );
            }
            let channel = if req.channel.is_empty() {
                "UNSPECIFIED"
            } else {
                &req.channel
            };
            let stated = ConsentStatement {
                name: &req.name,
                purpose: req.purpose,
                granted: req.granted.unwrap_or_default(),
                channel,
                evidence_ref: &req.evidence_ref,
                policy_version: &req.policy_version,
                policy_required: false,
            };
            let (id, change) = read_consent(&stated, violations)?;
            let key = idempotency_key(
                &caller,
                "UpdateConsent",
                &req.request_id,
                &pb::UpdateConsentRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            self.record_consent(&caller, &scope, &id, &change, &req.etag, key)
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "GrantConsent")]
    async fn grant_consent(
        &self,
        request: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let stated = ConsentStatement {
                name: &req.name,
                purpose: req.purpose,
                granted: true,
                channel: &req.channel,
                evidence_ref: &req.evidence_ref,
                policy_version: &req.policy_version,
                policy_required: true,
            };
            let (id, change) = read_consent(&stated, Violations::default())?;
            let key = idempotency_key(
                &caller,
                "GrantConsent",
                &req.request_id,
                &pb::GrantConsentRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            self.record_consent(&caller, &scope, &id, &change, &req.etag, key)
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "WithdrawConsent")]
    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let stated = ConsentStatement {
                name: &req.name,
                purpose: req.purpose,
                granted: false,
                channel: &req.channel,
                evidence_ref: &req.evidence_ref,
                policy_version: &req.policy_version,
                policy_required: false,
            };
            let (id, change) = read_consent(&stated, Violations::default())?;
            let key = idempotency_key(
                &caller,
                "WithdrawConsent",
                &req.request_id,
                &pb::WithdrawConsentRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            self.record_consent(&caller, &scope, &id, &change, &req.etag, key)
                .await
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "ListConsentEvents")]
    async fn list_consent_events(
        &self,
        request: Request<pb::ListConsentEventsRequest>,
    ) -> Result<Response<pb::ListConsentEventsResponse>, Status> {
        respond(async {
            let caller = principal(&request)?;
            let scope = caller.customer_read_scope()?;
            let req = request.get_ref();
            let id = parse_name("parent", &req.parent)?;
            let limit = page_size(req.page_size)?;
            let context = format!("ListConsentEvents|{}|{}", caller.subject, req.parent);
            let before = match self.page_tokens.decode(&req.page_token, &context)? {
                None => None,
                Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                    Error::invalid("page_token", "is not a page token of this list")
                })?),
            };
            let mut conn = self.db.acquire().await?;
            resolve(
                customers::get(&mut conn, &id, scope.branch(), Lock::None).await?,
                &scope,
                &id,
            )?;
            let mut page = customers::consent_events(&mut conn, &id, before, limit + 1).await?;
            let next_page_token = self
                .page_tokens
                .next_page(&mut page, limit, &context, |last| last.id.to_string());
            Ok(pb::ListConsentEventsResponse {
                consent_events: page
                    .iter()
                    .map(|e| pb::ConsentEvent {
                        purpose: purpose_to_proto(e.change.purpose) as i32,
                        granted: e.change.granted,
                        channel: e.change.channel.clone(),
                        evidence_ref: e.change.evidence_ref.clone(),
                        policy_version: e.change.policy_version.clone(),
                        recorded_by: e.recorded_by.clone(),
                        event_time: Some(timestamp(e.event_time)),
                    })
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, name = "LinkCustomers")]
    async fn link_customers(
        &self,
        request: Request<pb::LinkCustomersRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        respond(async {
            crate::audit::note_customers(
                &request,
                [&request.get_ref().name, &request.get_ref().linked_customer].map(String::as_str),
            );
            let caller = principal(&request)?;
            let scope = caller.customer_write_scope()?;
            let req = request.into_inner();
            let mut violations = Violations::default();
            let id = CustomerId::from_name(&req.name)
                .inspect_err(|e| violations.add("name", e.clone()))
                .ok();
            let linked = CustomerId::from_name(&req.linked_customer)
                .inspect_err(|e| violations.add("linked_customer", e.clone()))
                .ok();
            if id.is_some() && id == linked {
                violations.add("linked_customer", "must not be the customer itself");
            }
            let relationship = relationship_from_proto(req.relationship);
            if relationship.is_none() {
                violations.add(
                    "relationship",
                    "must be HOUSEHOLD, SPOUSE, GUARANTOR or DIRECTOR",
                );
            }
            let key = idempotency_key(
                &caller,
                "LinkCustomers",
                &req.request_id,
                &pb::LinkCustomersRequest {
                    request_id: String::new(),
                    ..req.clone()
                },
            )?;
            let (Some(id), Some(linked), Some(relationship)) =
                violations.into_result((id, linked, relationship))?
            else {
                return Err(Error::unreported_missing_part());
            };
            self.db
                .write(
                    key.as_ref(),
                    customer_names,
                    async |tx, names| {
                        current_customer(tx, &linked.name(), &scope, &caller).await?;
                        current_customer(tx, &names[0], &scope, &caller).await
                    },
                    async |tx| {
                        // Lock both customers in id order so two opposite links
                        // cannot deadlock.
                        let (first, second) = if id < linked {
                            (&id, &linked)
                        } else {
                            (&linked, &id)
                        };
                        for customer in [first, second] {
                            let found =
                                customers::get(tx, customer, scope.branch(), Lock::Update).await?;
                            resolve(found, &scope, customer)?;
                        }
                        let updated = customers::link(tx, &id, &linked, relationship).await?;
                        Ok(customer_to_proto(&updated, &caller))
                    },
                )
                .await
        })
        .await
    }
}
