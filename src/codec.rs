//! The wire codec of the contract's services: prost, except that a request
//! that is not a valid message of its method (malformed bytes, invalid UTF-8
//! in a string field) is the caller's mistake, INVALID_ARGUMENT, where
//! tonic's own codec answers INTERNAL (which callers neither retry nor fix).

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec as TonicCodec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::{api::status::layer_status, error::ErrorReason};

/// Named by `build.rs` (`codec_path`) for every generated service and client.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

impl<T, U> TonicCodec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstCodec::<T, U>::default().decoder())
    }
}

/// prost's decoder with its errors answered INVALID_ARGUMENT.
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|_| {
            layer_status(
                Code::InvalidArgument,
                ErrorReason::InvalidArgument,
                "the request is not a valid message of this method (malformed protobuf, or a \
                 string that is not UTF-8)",
                None,
            )
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
