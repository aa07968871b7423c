//! MergeCustomers: a duplicate customer folded into the survivor.

use super::*;

/// The two customers of a merge, as the request named them.
struct Merge {
    survivor: CustomerId,
    duplicate: CustomerId,
    etag: String,
    duplicate_etag: String,
}

impl TryFrom<&pb::MergeCustomersRequest> for Merge {
    type Error = Error;

    fn try_from(req: &pb::MergeCustomersRequest) -> Result<Self, Error> {
        let pb::MergeCustomersRequest {
            name,
            duplicate,
            etag,
            duplicate_etag,
            request_id: _,
        } = req;
        let mut violations = Violations::default();
        let survivor = CustomerId::from_name(name)
            .inspect_err(|e| violations.add("name", e.clone()))
            .ok();
        let duplicate = CustomerId::from_name(duplicate)
            .inspect_err(|e| violations.add("duplicate", e.clone()))
            .ok();
        if let (Some(s), Some(d)) = (&survivor, &duplicate)
            && s == d
        {
            violations.add("duplicate", "must name another customer than `name`");
        }
        let (Some(survivor), Some(duplicate)) = violations.into_result((survivor, duplicate))?
        else {
            return Err(Error::unreported_missing_part());
        };
        Ok(Merge {
            survivor,
            duplicate,
            etag: etag.clone(),
            duplicate_etag: duplicate_etag.clone(),
        })
    }
}

pub(super) async fn merge_customers(
    api: &CustomerApi,
    request: Request<pb::MergeCustomersRequest>,
) -> Result<Response<pb::Customer>, Status> {
    respond(async {
        {
            let req = request.get_ref();
            crate::audit::note_customers(&request, [req.name.as_str(), req.duplicate.as_str()]);
        }
        let caller = principal(&request)?;
        // Folding one customer's history into another's rewrites both:
        // a data-governance act of the bank, not of a branch (DESIGN §3).
        if !caller.has(Role::Admin) {
            return Err(Error::denied("merge customers (admin only)"));
        }
        let scope = caller.customer_write_scope()?;
        let req = request.into_inner();
        let merge = Merge::try_from(&req)?;
        let key = request_key(&caller, &req)?;
        api.db
            .write(
                key.as_ref(),
                customer_names,
                async |tx, names| current_customer(tx, &names[0], &scope, &caller).await,
                async |tx| {
                    // Both locked in id order, so two merges cannot deadlock;
                    // each must be in reach, neither erased nor merged.
                    let (first, second) = if merge.survivor < merge.duplicate {
                        (&merge.survivor, &merge.duplicate)
                    } else {
                        (&merge.duplicate, &merge.survivor)
                    };
                    for each in [first, second] {
                        let found = customers::get(tx, each, scope.branch(), Lock::Update).await?;
                        let current = resolve(found, &scope, each)?;
                        let etag = if *each == merge.survivor {
                            &merge.etag
                        } else {
                            &merge.duplicate_etag
                        };
                        check_etag(etag, &current)?;
                    }
                    let (survivor, _) =
                        customers::merge(tx, &merge.survivor, &merge.duplicate, &caller.subject)
                            .await?;
                    Ok(customer_to_proto(&survivor, &caller))
                },
            )
            .await
    })
    .await
}
