//! Customer profiles: create, read, look up, update, list, search, erase.

use super::*;
use crate::api::{
    page_token::{ListTokens, RowKeys, list_order},
    read_mask::Shape,
};

pub(super) async fn create_customer(
    api: &CustomerApi,
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
        let key = request_key(&caller, &req).unwrap_or_else(|e| {
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
        api.write_customer(key.as_ref(), &scope, &caller, async |tx| {
            let customer = customers::insert(tx, &id, &profile, &scope).await?;
            Ok(customer)
        })
        .await
        .inspect(|created| audit.customer(&created.name))
    })
    .await
}

pub(super) async fn get_customer(
    api: &CustomerApi,
    request: Request<pb::GetCustomerRequest>,
) -> Result<Response<pb::Customer>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let id = parse_name("name", &req.name)?;
        let shape = Shape::of::<pb::Customer>(req.view, req.read_mask.as_ref(), true)?;
        check_acting_for(&caller, id.as_str())?;
        let found = match api.db.get_customer(&id, scope.branch()).await? {
            // A merged duplicate's name is an alias of the survivor
            // (AIP-122): the answer carries the survivor's own name, read in
            // the caller's scope like any other.
            Found::Merged(survivor) => {
                crate::audit::note_customer(&request, survivor.as_str());
                let found = api.db.get_customer(&survivor, scope.branch()).await?;
                // Out of reach, the answer is about the name asked for:
                // it does not tell where the alias leads.
                let survivor = resolve(found, &scope, &survivor).map_err(|e| match e {
                    Error::PermissionDenied { .. } => Error::denied(format!(
                        "reach {}: it does not exist or is outside your reach",
                        id.name()
                    )),
                    e => e,
                })?;
                return Ok(customer_to_proto(&survivor, &caller)).map(|customer| {
                    if acting_for(&caller).is_some() {
                        self_service_view(customer)
                    } else {
                        customer
                    }
                });
            }
            found => found,
        };
        let customer = customer_to_proto(&resolve(found, &scope, &id)?, &caller);
        Ok(shape.apply(if acting_for(&caller).is_some() {
            self_service_view(customer)
        } else {
            customer
        }))
    })
    .await
}

pub(super) async fn lookup_customer(
    api: &CustomerApi,
    request: Request<pb::LookupCustomerRequest>,
) -> Result<Response<pb::Customer>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let external = rules::external_id(&req.system, &req.value)
            .map_err(|(part, description)| Error::invalid(part, description))?;
        match api
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

pub(super) async fn update_customer(
    api: &CustomerApi,
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
        let key = request_key(&caller, &req)?;
        let patch = violations.into_result(ProfilePatch { fields, values })?;
        let etag = customer.etag.clone();
        api.write_customer(key.as_ref(), &scope, &caller, async |tx| {
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
            Ok(updated)
        })
        .await
    })
    .await
}

/// ListCustomers pages by id, and its tokens named their order from the
/// start.
const LIST_CUSTOMERS_TOKENS: ListTokens = ListTokens {
    natural_timed: false,
    order_always_named: true,
};

pub(super) async fn list_customers(
    api: &CustomerApi,
    request: Request<pb::ListCustomersRequest>,
) -> Result<Response<pb::ListCustomersResponse>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let limit = page_size(req.page_size)?;
        let shape = Shape::of::<pb::Customer>(req.view, req.read_mask.as_ref(), false)?;
        let mut violations = Violations::default();
        let filter = CustomerFilter::parse(&req.filter)
            .inspect_err(|e| violations.add("filter", e.clone()))
            .unwrap_or_default();
        let order = list_order(&req.order_by, &mut violations);
        violations.into_result(())?;
        let pages = api.page_tokens.ordered(
            LIST_CUSTOMERS_TOKENS,
            order,
            format!("ListCustomers|{}|{}", caller.subject, req.filter),
        );
        let after = pages.resume::<1>(&req.page_token)?;
        let mut page = api
            .db
            .list_customers(
                scope.branch(),
                &filter,
                order,
                after.as_ref().map(|k| (k.time, k.ids[0].as_str())),
                limit + 1,
            )
            .await?;
        let next_page_token = pages.next_page(
            &mut page,
            limit,
            |c| shape.apply(customer_to_proto(c, &caller)).encoded_len(),
            |last| RowKeys {
                natural_time: None,
                update_time: last.update_time,
                ids: [last.id.as_str().to_string()],
            },
        );
        crate::audit::note_customers(&request, page.iter().map(|c| c.id.as_str()));
        Ok(pb::ListCustomersResponse {
            customers: page
                .iter()
                .map(|c| shape.apply(customer_to_proto(c, &caller)))
                .collect(),
            next_page_token,
        })
    })
    .await
}

pub(super) async fn search_customers(
    api: &CustomerApi,
    request: Request<pb::SearchCustomersRequest>,
) -> Result<Response<pb::SearchCustomersResponse>, Status> {
    respond(async {
        let caller = principal(&request)?;
        let scope = caller.customer_read_scope()?;
        let req = request.get_ref();
        let limit = page_size(req.page_size)?;
        let shape = Shape::of::<pb::Customer>(req.view, req.read_mask.as_ref(), false)?;
        if req.query.chars().count() > search::MAX_QUERY_CHARS {
            return Err(Error::invalid(
                "query",
                format!("must be at most {} characters", search::MAX_QUERY_CHARS),
            ));
        }
        let tsquery = search::tsquery(&req.query)
            .ok_or_else(|| Error::invalid("query", "must contain at least one letter or digit"))?;
        let context = format!("SearchCustomers|{}|{}", caller.subject, req.query);
        let offset: i64 = match api.page_tokens.decode(&req.page_token, &context)? {
            None => 0,
            Some(cursor) => cursor
                .parse()
                .map_err(|_| Error::invalid("page_token", "is not a page token of this search"))?,
        };
        let mut page = api
            .db
            .search_customers(scope.branch(), &tsquery, &req.query, offset, limit + 1)
            .await?;
        let next_page_token = api.page_tokens.next_sized_page(
            &mut page,
            limit,
            &context,
            |c| shape.apply(customer_to_proto(c, &caller)).encoded_len(),
            |_, kept| (offset + kept as i64).to_string(),
        );
        crate::audit::note_customers(&request, page.iter().map(|c| c.id.as_str()));
        Ok(pb::SearchCustomersResponse {
            customers: page
                .iter()
                .map(|c| shape.apply(customer_to_proto(c, &caller)))
                .collect(),
            next_page_token,
        })
    })
    .await
}

pub(super) async fn delete_customer(
    api: &CustomerApi,
    request: Request<pb::DeleteCustomerRequest>,
) -> Result<Response<()>, Status> {
    respond(async {
        crate::audit::note_customer(&request, &request.get_ref().name);
        let caller = principal(&request)?;
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let id = parse_name("name", &req.name)?;
        let key = request_key(&caller, &req)?;
        api.db
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
