//! `CustomerService`: customer profiles under the access rules of DESIGN §3.

use std::collections::BTreeMap;

use prost::Message;
use tonic::{Request, Response, Status};

use super::{
    Mutation,
    page_token::{PageTokens, page_size},
    principal, request_key, respond, timestamp,
};

use crate::{
    domain::{
        customer::{
            self as rules, ConsentChange, ConsentPurpose, Customer, CustomerId, CustomerKind, Pii,
            Profile, ProfileField, ProfilePatch, Relationship, Tier,
        },
        filter::CustomerFilter,
        mask,
        principal::{BranchScope, Principal, Role},
        search,
        systems::{acting_for, check_acting_for},
    },
    error::{Error, Violations},
    pb::v1::{self as pb, customer_service_server::CustomerService},
    store::{
        Db,
        customers::{self, Found, Lock},
        idempotency::IdempotencyKey,
    },
};

pub mod access;
mod consent;
pub mod convert;
mod merge;
mod profiles;
mod validate;

use access::*;
use convert::*;
use validate::*;

pub struct CustomerApi {
    db: Db,
    page_tokens: PageTokens,
}

impl CustomerApi {
    pub fn new(db: Db, page_tokens: PageTokens) -> Self {
        CustomerApi { db, page_tokens }
    }
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    #[tracing::instrument(skip_all, name = "CreateCustomer")]
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        profiles::create_customer(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GetCustomer")]
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        profiles::get_customer(self, request).await
    }

    #[tracing::instrument(skip_all, name = "LookupCustomer")]
    async fn lookup_customer(
        &self,
        request: Request<pb::LookupCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        profiles::lookup_customer(self, request).await
    }

    #[tracing::instrument(skip_all, name = "UpdateCustomer")]
    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        profiles::update_customer(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListCustomers")]
    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        profiles::list_customers(self, request).await
    }

    #[tracing::instrument(skip_all, name = "SearchCustomers")]
    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        profiles::search_customers(self, request).await
    }

    #[tracing::instrument(skip_all, name = "DeleteCustomer")]
    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<()>, Status> {
        profiles::delete_customer(self, request).await
    }

    #[tracing::instrument(skip_all, name = "UpdateConsent")]
    async fn update_consent(
        &self,
        request: Request<pb::UpdateConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        consent::update_consent(self, request).await
    }

    #[tracing::instrument(skip_all, name = "GrantConsent")]
    async fn grant_consent(
        &self,
        request: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        consent::change_consent(self, request).await
    }

    #[tracing::instrument(skip_all, name = "WithdrawConsent")]
    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        consent::change_consent(self, request).await
    }

    #[tracing::instrument(skip_all, name = "ListConsentEvents")]
    async fn list_consent_events(
        &self,
        request: Request<pb::ListConsentEventsRequest>,
    ) -> Result<Response<pb::ListConsentEventsResponse>, Status> {
        consent::list_consent_events(self, request).await
    }

    #[tracing::instrument(skip_all, name = "LinkCustomers")]
    async fn link_customers(
        &self,
        request: Request<pb::LinkCustomersRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        consent::link_customers(self, request).await
    }

    #[tracing::instrument(skip_all, name = "UnlinkCustomers")]
    async fn unlink_customers(
        &self,
        request: Request<pb::UnlinkCustomersRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        consent::unlink_customers(self, request).await
    }

    #[tracing::instrument(skip_all, name = "MergeCustomers")]
    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        merge::merge_customers(self, request).await
    }
}
