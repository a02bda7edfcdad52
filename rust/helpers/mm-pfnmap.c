// SPDX-License-Identifier: GPL-2.0

#include <linux/mm.h>

__rust_helper void rust_helper_vm_flags_set(struct vm_area_struct *vma, vm_flags_t flags)
{
	vm_flags_set(vma, flags);
}

__rust_helper void rust_helper_vm_flags_clear(struct vm_area_struct *vma, vm_flags_t flags)
{
	vm_flags_clear(vma, flags);
}

__rust_helper pgprot_t rust_helper_pgprot_writecombine(pgprot_t prot)
{
	return pgprot_writecombine(prot);
}

/*
 * The protection of a writable entry in @vma: a shared writable vma with
 * pfn_mkwrite has a read-only vm_page_prot (write notification).
 */
__rust_helper pgprot_t rust_helper_vma_write_prot(struct vm_area_struct *vma)
{
	return pgprot_modify(vma->vm_page_prot, vm_get_page_prot(vma->vm_flags));
}

__rust_helper bool rust_helper_pmd_none(pmd_t pmd)
{
	return pmd_none(pmd);
}
