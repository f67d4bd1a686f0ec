//! `#[otwrap::main]`: makes a binary worker-capable by letting it serve a
//! driver first thing in `main` when it was started as a worker.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ItemFn;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let mut out = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[otwrap::main]` applies to the program's `fn main`",
            )
            .to_compile_error();
            out.extend(item);
            return out;
        }
    };
    let mut out = TokenStream::new();
    if !args.is_empty() {
        out.extend(
            syn::Error::new_spanned(&args, "`#[otwrap::main]` takes no arguments")
                .to_compile_error(),
        );
    }
    let hook: syn::Stmt = syn::parse_quote!(::otwrap::__private::run_if_worker(););
    function.block.stmts.insert(0, hook);
    function.to_tokens(&mut out);
    quote!(#out)
}
